// Package kafka makes Apache Kafka the transport of fxevents, on franz-go
// (github.com/twmb/franz-go).
//
// Including Module in an app makes every published event a Kafka record:
// the memory bus publishes directly, the outbox relay publishes what the
// transaction stored. Records go to the topic "<prefix>.<event type>",
// keyed by the aggregate id (one aggregate, one partition, in order), with
// the event id, type, source and the trace context and baggage in headers.
// The producer is idempotent with acks=all: a batch the client retries is
// stored once.
//
// Each handler of the app consumes in a consumer group of its own,
// GroupName(service, handler), shared by the service's replicas. Offsets
// are committed only after the handler's effect (at-least-once delivery;
// fxevents.Idempotent makes the effect exactly-once). A failing record is
// retried in place with backoff, then copied to the dead-letter topic
// "<prefix>.deadletter.<group>" with headers saying why, and kept in the
// dispatcher's dead-letter store, from where the dashboard (the admin
// routes /events/dead) re-drives it. A rebalance waits until the records
// already polled are settled and committed.
//
//	fx.New(
//		fxcore.Module, fxevents.Module, kafka.Module, // MARTY_KAFKA_BROKERS=kafka-1:9092,kafka-2:9092
//		fxevents.AsHandler(newOrderPlacedHandler),
//	).Run()
//
// The tests run on kfake, franz-go's in-process Kafka; see the README for
// what that does not cover.
package kafka
