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
// with MARTY_NATS_URL=nats://nats:4222. For development and tests,
// MARTY_NATS_EMBEDDED=true runs an in-process nats-server with JetStream;
// natsjs does not link that server (a service that talks to a real NATS
// carries none): add natsdev.Module from package fxevents/natsjs/natsdev to
// the development build. TLS is fxcore.TLS under MARTY_NATS_TLS_*. See
// README.md for the configuration.
//
// The connection's close is quiet: a deliberate Close, or a server lost
// once the app's stop has begun, is logged at debug level; a server lost
// while the app runs is a warning, and a connection that closes for good by
// itself is fatal (ConnOptions.Fatal, which stops an Fx app).
//
// # Without Fx
//
// The constructors take the Config and an options struct whose zero value
// works, and validate the Config:
//
//	conn, err := natsjs.NewConn(cfg, natsjs.ConnOptions{Logger: log})
//	if err != nil {
//		return err
//	}
//	if err := conn.Start(ctx); err != nil { // connects, ensures the stream
//		return err
//	}
//	defer conn.Close(ctx)
//	// conn is an fxevents.Transport: fxevents.MemoryBusOptions{Transport: conn}
//	consumers, err := natsjs.NewConsumers(natsjs.ConsumersOptions{Conn: conn, Dispatcher: d})
//	if err != nil {
//		return err
//	}
//	_ = consumers.Start(ctx)
//	defer consumers.Stop(ctx)
package natsjs
