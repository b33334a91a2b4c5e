// Package rabbitmq makes RabbitMQ the transport of martyfx's event bus, on
// the RabbitMQ team's client github.com/rabbitmq/amqp091-go.
//
// Including Module in an app that has fxevents.Module does two things:
//
//   - every published envelope goes to RabbitMQ (the outbox relay publishes
//     there; with the memory bus, Publish goes there directly): to the
//     durable direct exchange MARTY_RABBITMQ_EXCHANGE with routing key
//     "<event type>.<partition>", the partition being a hash of the
//     aggregate id modulo MARTY_RABBITMQ_PARTITIONS; persistent, with
//     message_id = the event id (the inbox's key), the trace context,
//     baggage and correlation id as headers. An event counts as delivered
//     only once the broker confirmed it (publisher confirms);
//   - the app's handlers consume from RabbitMQ: every handler of a service
//     has MARTY_RABBITMQ_PARTITIONS durable quorum queues
//     "<exchange>.<service>_<handler>.<partition>" with
//     single-active-consumer, so one replica at a time handles a partition,
//     one message at a time, and an aggregate's events are handled in
//     order. A message is acknowledged after the handler returned (wrap it
//     in fxevents.Idempotent for one effect per event). A failure goes
//     through a delay queue per attempt (quorum, message TTL = the
//     backoff, dead-lettered at least once back to the work queue); after
//     the last attempt the message goes to the dead-letter queue
//     "<exchange>.<service>_<handler>.dead" and to the dispatcher's dead
//     letters, which the dashboard lists and re-drives.
//
// Replicas share the work by partitions: a replica that is the active
// consumer of more than its share hands the excess to a standby replica
// (MARTY_RABBITMQ_REBALANCE_INTERVAL). Other services get every event in
// queues of their own. The topology is declared at start; a queue or
// exchange that exists with other settings fails the start with an error
// naming it. A lost connection is reconnected forever with fresh channels.
//
// The trade-off of partition queues: the order holds per aggregate, and
// the parallelism of a handler is at most MARTY_RABBITMQ_PARTITIONS across
// all replicas (one message at a time per partition); a slow or retried
// message delays nothing else in its partition only while it runs (a retry
// leaves the queue, so later events of the same aggregate may pass it).
// Changing the partition count re-maps aggregates: drain the queues first.
// No plugin is needed (the consistent-hash exchange would spread keys the
// same way, at the cost of a plugin to enable on every broker).
//
//	fx.New(
//		fxcore.Module, fxrepo.Module, fxevents.Module, rabbitmq.Module,
//		fxevents.AsHandler(newOrderCreatedHandler),
//	).Run()
//
// with MARTY_RABBITMQ_URL=amqp://user:password@rabbitmq:5672/vhost. TLS is
// fxcore.TLS under MARTY_RABBITMQ_TLS_* (or an amqps:// URL). See README.md
// for the configuration.
//
// # Without Fx
//
//	conn, err := rabbitmq.NewConn(cfg, rabbitmq.ConnOptions{Logger: log})
//	if err != nil {
//		return err
//	}
//	if err := conn.Start(ctx); err != nil { // connects, declares the exchanges
//		return err
//	}
//	defer conn.Close(ctx)
//	// conn is an fxevents.Transport: fxevents.MemoryBusOptions{Transport: conn}
//	consumers, err := rabbitmq.NewConsumers(rabbitmq.ConsumersOptions{Conn: conn, Dispatcher: d})
//	if err != nil {
//		return err
//	}
//	_ = consumers.Start(ctx) // declares the queues, consumes
//	defer consumers.Stop(ctx)
package rabbitmq
