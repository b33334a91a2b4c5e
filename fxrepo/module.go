package fxrepo

import (
	"context"
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
// and migrated at start, closed at stop) and the UnitOfWork, and registers
// a critical readiness check that pings the database.
var Module = fx.Module("martyfx.repo",
	fx.Provide(
		ProvideConfig,
		newFxDatabase,
		newFxUnitOfWork,
	),
	fxmonitor.AsCheck(newReadinessCheck),
	errorStatusOption,
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

func newFxDatabase(p dbParams) (*gorm.DB, error) {
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
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{OnStart: d.start, OnStop: d.stop})
	return d.gdb, nil
}

func newFxUnitOfWork(db *gorm.DB, cfg Config, log *zap.Logger) UnitOfWork {
	u := NewUnitOfWork(db, WithRetries(cfg.TxRetries)).(*unitOfWork)
	u.log = log.Named("db")
	return u
}

func newReadinessCheck(db *gorm.DB) (fxmonitor.Check, error) {
	sqlDB, err := db.DB()
	if err != nil {
		return fxmonitor.Check{}, err
	}
	return fxmonitor.Check{
		Name:     "db",
		Kinds:    fxmonitor.Readiness,
		Critical: true,
		Timeout:  2 * time.Second,
		Func:     func(ctx context.Context) error { return sqlDB.PingContext(ctx) },
	}, nil
}
