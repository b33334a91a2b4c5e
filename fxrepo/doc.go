// Package fxrepo is martyfx's data layer: a GORM *gorm.DB on PostgreSQL
// (production) or SQLite (the embedded default, pure Go), opened and pinged
// with retry at start, migrated with goose SQL migrations and GORM
// auto-migration, instrumented (spans, query histogram, pool metrics, zap
// logs with trace ids, readiness check), a generic Repository and a
// UnitOfWork that carries its transaction in the context.
//
// PostgreSQL is built in; SQLite links like a database/sql driver, with
// import _ "github.com/martyfx/martyfx/fxrepo/sqlite" in the service's main
// package, so a PostgreSQL-only binary does not carry its engine.
//
// Database errors are classified (Classify, registered with the servers by
// the Module): a handler returns them as they are and the client gets
// NOT_FOUND / 404, INVALID_ARGUMENT / 400 for a value the database refuses,
// UNAVAILABLE / 503 with Retry-After while the database is down, and never
// the driver's text. The DSN's password appears in no log or error.
//
// Every query, in the framework and in users' code, goes through DB(ctx, db):
// it returns the unit of work's transaction when ctx carries one, so code that
// knows nothing about transactions (an outbox writer, a repository) joins the
// caller's transaction.
//
//	fx.New(
//		fxcore.Module, fxrepo.Module,
//		fxrepo.AsModel(&Order{}),
//		fxrepo.AsMigrations("orders", ordersMigrations),
//		fx.Provide(fxrepo.NewRepository[Order, int64]),
//	)
//
//	err := uow.Do(ctx, func(ctx context.Context) error {
//		if err := orders.Create(ctx, o); err != nil {
//			return err
//		}
//		return bus.Publish(ctx, OrderCreated{ID: o.ID}) // same transaction
//	})
//
// The Module opens the database only when the app has a model, a migration
// set or something that takes *gorm.DB or UnitOfWork: a service without
// any does no database work and writes no file. Without auto-migration
// (production), every model's table must exist once the migrations ran, or
// the start fails naming the table (MARTY_DB_TABLE_CHECK).
//
// # Without Fx
//
// NewDatabase(cfg, DatabaseOptions) validates cfg and builds the
// instrumented *gorm.DB without connecting; Start connects, migrates and
// checks the tables, Stop closes the pool within its context's deadline.
// DatabaseOptions takes the same fields as every martyfx module's options
// (Logger, Info, Registerer, TracerProvider; nil or zero is a sensible
// default) and the registrations as plain slices (Models, Migrations).
// NewUnitOfWork and NewRepository take the *gorm.DB:
//
//	d, err := fxrepo.NewDatabase(fxrepo.DefaultConfig(), fxrepo.DatabaseOptions{
//		Logger: log,
//		Models: []any{&Order{}},
//	})
//	if err != nil {
//		return err
//	}
//	if err := d.Start(ctx); err != nil {
//		return err
//	}
//	defer d.Stop(context.Background())
//	uow := fxrepo.NewUnitOfWork(d.DB())
//	orders := fxrepo.NewRepository[Order, int64](d.DB())
package fxrepo
