// Package natsjs makes NATS JetStream the transport of martyfx's event bus,
// so events cross from one service to others through a real, clusterable
// broker.
//
// Including Module in an app that has fxevents.Module does two things:
//
//   - every published envelope goes to JetStream (the outbox relay publishes
//     there; with the memory bus, Publish goes there directly) on the subject
//     "<prefix>.<event type>", with Nats-Msg-Id set to the envelope id (so
//     JetStream stores a re-sent envelope once) and the metadata (trace
//     context, baggage, correlation id) as headers; an event counts as
//     delivered only once JetStream acknowledged it;
//   - the app's handlers consume from JetStream: one durable pull consumer
//     per service and handler, fetching in batches and handing messages to
//     the shared fxevents dispatcher, which runs the handler in a span that
//     continues the publisher's trace. A success is acknowledged, a failure
//     is redelivered after a backoff (NakWithDelay), a long handler keeps
//     its message with InProgress, and after the maximum deliveries the
//     message is terminated and copied to a dead-letter subject.
//
// Replicas of a service share its durable consumers, so each event is
// handled by one replica; different services get every event. Wrap a
// handler in fxevents.Idempotent to turn redeliveries into single effects.
//
//	fx.New(
//		fxcore.Module, fxrepo.Module, fxevents.Module, natsjs.Module,
//		fxevents.AsHandler(newOrderCreatedHandler),
//	).Run()
//
// with MARTY_NATS_URL=nats://nats:4222, or MARTY_NATS_EMBEDDED=true to run
// an in-process nats-server with JetStream for development and tests. See
// README.md for the configuration.
package natsjs
