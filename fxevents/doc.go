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
// Handler middleware (AsHandlerMiddleware) is ordered by an explicit Order,
// ascending, the lowest outermost; each attempt runs the span, the metrics,
// the handler timeout and panic recovery, then the middleware, then the
// handler (see HandlerMiddleware).
//
// Transports (NATS JetStream, package fxevents/natsjs) plug in by providing
// an fxevents.Transport; consumers hand what they receive to the shared
// *Dispatcher (HandleOne). See README.md for the contract.
//
// The package is larger than martyfx's guideline of 60 exported names
// (about 78): it holds the event model (Event, Envelope, Codec, Registry),
// the handler model (Handler, HandlerFunc, middleware, Idempotent,
// Permanent), both buses with their constructors and one configuration
// section, and the Dispatcher contract that transports in other packages
// drive. Splitting the buses from the dispatcher would split that section
// and make the transports import two packages.
//
// # Without Fx
//
// Every part has a constructor of the martyfx shape, NewXxx(cfg Config, opts
// XxxOptions) (or NewXxx(opts) when the part has no config of its own),
// that validates cfg; the options' zero values work, and Start(ctx) and
// Stop(ctx) run the lifecycle:
//
//	d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{
//		Logger:   log,
//		Handlers: []fxevents.Handler{fxevents.HandlerFunc("mailer", sendMail)},
//	})
//	if err != nil {
//		return err
//	}
//	bus, err := fxevents.NewMemoryBus(fxevents.MemoryBusOptions{Dispatcher: d})
//	if err != nil {
//		return err
//	}
//	_ = bus.Start(ctx)
//	defer bus.Stop(ctx)
//	err = bus.Publish(ctx, OrderCreated{OrderID: "42"})
//
// With Config.Bus "outbox" and DispatcherOptions.DB, NewOutboxBus gives the
// transactional outbox and its relay instead. ExampleNewDispatcher is a
// complete program.
package fxevents
