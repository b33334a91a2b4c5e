// Package fxevents is martyfx's event bus: typed domain events, handlers
// registered with AsHandler, a dispatcher that runs every handler on its own
// bounded queue and worker pool (per-aggregate order, retries with backoff
// and jitter, timeouts, panic recovery, dead letters), an in-memory bus and
// a transactional outbox on the database with a relay that scales across
// replicas, and an inbox for exactly-once effects.
//
// An event is any type with an EventType method; it travels as an Envelope
// that carries the publisher's trace context, baggage and correlation id:
//
//	type OrderCreated struct{ OrderID string }
//
//	func (OrderCreated) EventType() string    { return "orders.order_created" }
//	func (e OrderCreated) AggregateID() string { return e.OrderID }
//
//	fx.New(martyfx.Modules...,
//		fxevents.AsHandler(func(log *zap.Logger) fxevents.Handler {
//			return fxevents.HandlerFunc("mailer", func(ctx context.Context, e OrderCreated) error {
//				log.Info("order created", zap.String("id", e.OrderID))
//				return nil
//			})
//		}),
//	)
//
// and a publisher takes fxevents.Bus from the graph and calls
// bus.Publish(ctx, OrderCreated{OrderID: "42"}).
//
// Transports (NATS JetStream, package fxevents/natsjs) plug in by providing
// an fxevents.Transport; consumers hand what they receive to the shared
// *Dispatcher (HandleOne). See README.md for the contract.
package fxevents
