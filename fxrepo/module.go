package fxrepo

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor"
)

// Module provides the "db" Config, the *gorm.DB (opened, pinged with retry
// and migrated at start, closed at stop) and the UnitOfWork, registers a
// critical readiness check that pings the database, and registers Classify
// with the servers (fxcore.AsClassifier), so database errors reach clients
// as codes (UNAVAILABLE / 503, INVALID_ARGUMENT / 400 ...) without the
// driver's text.
var Module = fx.Module("martyfx.repo",
	fx.Provide(
		ProvideConfig,
		newFxDatabase,
		newFxUnitOfWork,
	),
	fxmonitor.AsCheck(newReadinessCheck),
	classifierOption,
	// Including the module means the app has a database: open it even
	// when nothing else asks for it yet.
	fx.Invoke(func(*gorm.DB) {}),
)

// ProvideConfig loads the "db" section (MARTY_DB_*) over DefaultConfigFor(info).
func ProvideConfig(src *fxcore.Source, info fxcore.ServiceInfo) (Config, error) {
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
	Migrations     []Migrations         `group:"martyfx.repo.migrations"`
}

// newFxDatabase also returns the resolved target, for the readiness check
// (an unexported type: nothing outside the module can ask for it).
func newFxDatabase(p dbParams) (*gorm.DB, target, error) {
	models := make([]any, len(p.Models))
	for i, m := range p.Models {
		models[i] = m.v
	}
	d, err := newDatabase(p.Config, Options{
		ServiceName:    p.Info.Name,
		Logger:         p.Log,
		Registerer:     p.Registerer,
		TracerProvider: p.TracerProvider,
		Migrations:     p.Migrations,
		Models:         models,
	})
	if err != nil {
		return nil, target{}, err
	}
	p.Lifecycle.Append(fx.Hook{OnStart: d.start, OnStop: d.stop})
	return d.gdb, d.target, nil
}

func newFxUnitOfWork(db *gorm.DB, cfg Config, log *zap.Logger) UnitOfWork {
	u := NewUnitOfWork(db, WithRetries(cfg.TxRetries)).(*unitOfWork)
	u.log = log.Named("db")
	return u
}

// newReadinessCheck pings the pool. Its error is shown on the admin
// server's probes, /statusz and the dashboard: the password is scrubbed
// from it.
func newReadinessCheck(db *gorm.DB, t target) (fxmonitor.Check, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return fxmonitor.Check{}, err
	}
	return fxmonitor.Check{
		Name:     "db",
		Kinds:    fxmonitor.Readiness,
		Critical: true,
		Timeout:  2 * time.Second,
		Func: func(ctx context.Context) error {
			if err := sqlDB.PingContext(ctx); err != nil {
				return fmt.Errorf("fxrepo: ping %s at %s: %w", t.driver, t.redacted, t.scrub(err))
			}
			return nil
		},
	}, nil
}
