package fxrepo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor"
)

// Module provides the "db" Config, the *gorm.DB (a Database: opened,
// pinged with retry, migrated and its models' tables checked at start,
// closed at stop), the UnitOfWork and OnDemand; registers a critical
// readiness check that pings the database, and registers Classify with the
// servers (fxcore.AsClassifier), so database errors reach clients as codes
// (UNAVAILABLE / 503, INVALID_ARGUMENT / 400 ...) without the driver's
// text.
//
// The database is opened only when the app has a model (AsModel), a
// migration set (AsMigrations) or something that takes *gorm.DB or
// UnitOfWork (or calls OnDemand.Open). Otherwise the Module does nothing:
// no connection, no SQLite file; it says so at debug level.
var Module = fx.Module("martyfx.repo",
	fx.Provide(
		provideConfig,
		newLazyDatabase,
		newFxDB,
		newFxUnitOfWork,
		newOnDemand,
	),
	fxmonitor.AsCheck(newReadinessCheck),
	classifierOption,
	fx.Invoke(openWhenRegistered),
)

// provideConfig loads the "db" section (MARTY_DB_*) over DefaultConfigFor(info).
func provideConfig(src *fxcore.Source, info fxcore.ServiceInfo) (Config, error) {
	return fxcore.Load(src, "db", DefaultConfigFor(info))
}

type dbParams struct {
	fx.In

	Lifecycle      fx.Lifecycle
	Config         Config
	Info           fxcore.ServiceInfo
	Log            *zap.Logger
	Registerer     prometheus.Registerer
	TracerProvider trace.TracerProvider `optional:"true"`
	Models         []model              `group:"martyfx.repo.models"`
	Migrations     []migrationSet       `group:"martyfx.repo.migrations"`
}

// lazyDatabase builds the Database, and appends its start and stop hooks,
// the first time something needs it; until then nothing is opened.
type lazyDatabase struct {
	p    dbParams
	once sync.Once
	d    atomic.Pointer[Database]
	uow  UnitOfWork
	err  error
}

// newLazyDatabase validates the config at once, so a bad MARTY_DB_*
// variable fails the start even when the database is never opened.
func newLazyDatabase(p dbParams) (*lazyDatabase, error) {
	if err := p.Config.Validate(); err != nil {
		return nil, fmt.Errorf("fxrepo: invalid config: %w", err)
	}
	return &lazyDatabase{p: p}, nil
}

// open builds the Database once; the hooks are appended when the first
// dependent is built, so the database starts before it and stops after it.
func (l *lazyDatabase) open() (*Database, error) {
	l.once.Do(func() {
		opts := DatabaseOptions{
			Logger:         l.p.Log,
			Info:           l.p.Info,
			Registerer:     l.p.Registerer,
			TracerProvider: l.p.TracerProvider,
			Models:         make([]any, len(l.p.Models)),
		}
		for i, m := range l.p.Models {
			opts.Models[i] = m.v
		}
		for _, m := range l.p.Migrations {
			opts.Migrations = append(opts.Migrations, m.Migrations)
		}
		d, err := NewDatabase(l.p.Config, opts)
		if err != nil {
			l.err = err
			return
		}
		l.p.Lifecycle.Append(fx.Hook{OnStart: d.Start, OnStop: d.Stop})
		u := NewUnitOfWork(d.DB(), WithRetries(l.p.Config.TxRetries)).(*unitOfWork)
		u.log = l.p.Log.Named("db")
		l.uow = u
		l.d.Store(d)
	})
	return l.d.Load(), l.err
}

func newFxDB(l *lazyDatabase) (*gorm.DB, error) {
	d, err := l.open()
	if err != nil {
		return nil, err
	}
	return d.DB(), nil
}

func newFxUnitOfWork(l *lazyDatabase) (UnitOfWork, error) {
	if _, err := l.open(); err != nil {
		return nil, err
	}
	return l.uow, nil
}

// OnDemand is in the graph for modules that need the database only in some
// configurations, so that an app that does not use the database never
// opens it: fxevents takes it, because its outbox bus and idempotent
// handlers need the database and its memory bus does not. Taking *gorm.DB
// or UnitOfWork from the graph opens the database at start; taking OnDemand
// opens it only if Open is called. The zero OnDemand (the app has no
// fxrepo.Module, when taken with `optional:"true"`) has no database.
type OnDemand struct{ l *lazyDatabase }

func newOnDemand(l *lazyDatabase) OnDemand { return OnDemand{l: l} }

// Open returns the app's *gorm.DB and UnitOfWork, the same as the graph's,
// and makes the database open at start. Call it from a constructor, before
// the app starts. Without fxrepo.Module it returns nil, nil, nil.
func (o OnDemand) Open() (*gorm.DB, UnitOfWork, error) {
	if o.l == nil {
		return nil, nil, nil
	}
	d, err := o.l.open()
	if err != nil {
		return nil, nil, err
	}
	return d.DB(), o.l.uow, nil
}

type registrations struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Log        *zap.Logger
	DB         *lazyDatabase
	Models     []model        `group:"martyfx.repo.models"`
	Migrations []migrationSet `group:"martyfx.repo.migrations"`
}

// openWhenRegistered opens the database when a model or a (non-optional)
// migration set is registered, even if nothing takes *gorm.DB: the tables
// are created or checked at start. Otherwise only a dependent opens it.
func openWhenRegistered(r registrations) error {
	needed := len(r.Models) > 0
	for _, m := range r.Migrations {
		needed = needed || !m.optional
	}
	if needed {
		_, err := r.DB.open()
		return err
	}
	r.Lifecycle.Append(fx.StartHook(func() {
		if r.DB.d.Load() == nil {
			r.Log.Named("db").Debug("database not opened: no model (fxrepo.AsModel), migration set (fxrepo.AsMigrations) or dependent of *gorm.DB or fxrepo.UnitOfWork")
		}
	}))
	return nil
}

// newReadinessCheck is the "db" check: Database.Check once the database is
// opened; a database the app never opened has nothing to check. Its error
// is shown on the admin server's probes, /statusz and the dashboard: the
// password is scrubbed from it.
func newReadinessCheck(l *lazyDatabase) fxmonitor.Check {
	return fxmonitor.Check{
		Name:     "db",
		Kinds:    fxmonitor.Readiness,
		Critical: true,
		Timeout:  2 * time.Second,
		Func: func(ctx context.Context) error {
			d := l.d.Load()
			if d == nil {
				return nil
			}
			return d.Check(ctx)
		},
	}
}
