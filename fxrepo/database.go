package fxrepo

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"
)

// Options are the collaborators of Open (all optional).
type Options struct {
	// ServiceName names the default SQLite file ("<name>.db").
	ServiceName string
	// Logger receives GORM's log, retries and migrations (default: none).
	Logger *zap.Logger
	// Registerer gets the query histogram and pool metrics (default: none).
	Registerer prometheus.Registerer
	// TracerProvider makes the statement spans (default: otel's global).
	TracerProvider trace.TracerProvider
	// Migrations are applied at open when cfg.Migrate is on.
	Migrations []Migrations
	// Models are auto-migrated at open when cfg.AutoMigrate is on.
	Models []any
}

// database is the *gorm.DB with its lifecycle.
type database struct {
	cfg    Config
	target target
	gdb    *gorm.DB
	sqlDB  *sql.DB
	log    *zap.Logger
	opts   Options
}

// newDatabase builds the instrumented *gorm.DB without connecting.
func newDatabase(cfg Config, o Options) (*database, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxrepo: invalid config: %w", err)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	t, err := resolve(cfg, o.ServiceName)
	if err != nil {
		return nil, err
	}
	log := o.Logger.Named("db")
	gdb, err := gorm.Open(t.dialector(), &gorm.Config{
		Logger:                 newZapLogger(o.Logger, cfg.SlowQueryThreshold, cfg.QueryValues),
		SkipDefaultTransaction: true,
		PrepareStmt:            cfg.PrepareStmt,
		// GORM's statement cache starts a cleanup goroutine that never
		// exits unless the TTL is exactly its "no eviction" value; the
		// cache stays bounded by size (LRU) either way.
		PrepareStmtTTL:       24 * 365 * 10 * time.Hour,
		DisableAutomaticPing: true,
		NowFunc:              func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	})
	if err != nil {
		return nil, fmt.Errorf("fxrepo: open %s at %s: %w", t.driver, t.redacted, t.scrub(err))
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("fxrepo: open %s at %s: %w", t.driver, t.redacted, err)
	}
	configurePool(sqlDB, cfg, t)
	if err := gdb.Use(tracingPlugin(o.TracerProvider, cfg.QueryValues)); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("fxrepo: install tracing: %w", err)
	}
	if o.Registerer != nil {
		m, err := newQueryMetrics(o.Registerer)
		if err == nil {
			err = gdb.Use(m)
		}
		if err == nil {
			err = o.Registerer.Register(collectors.NewDBStatsCollector(sqlDB, t.name))
		}
		if err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("fxrepo: metrics: %w", err)
		}
	}
	return &database{cfg: cfg, target: t, gdb: gdb, sqlDB: sqlDB, log: log, opts: o}, nil
}

// start connects (with retry), migrates and auto-migrates. On failure the
// pool is closed.
func (d *database) start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			_ = d.sqlDB.Close()
		}
	}()
	if err := ping(ctx, d.sqlDB, d.cfg, d.target, d.log); err != nil {
		return err
	}
	if d.cfg.Migrate && len(d.opts.Migrations) > 0 {
		if err := migrate(ctx, d.sqlDB, d.target.driver, d.opts.Migrations, d.log); err != nil {
			return d.target.scrub(err)
		}
	}
	if d.cfg.AutoMigrate && len(d.opts.Models) > 0 {
		if err := d.gdb.WithContext(ctx).AutoMigrate(d.opts.Models...); err != nil {
			return fmt.Errorf("fxrepo: auto-migrate: %w", d.target.scrub(err))
		}
	}
	d.log.Info("database ready", zap.String("driver", d.target.driver), zap.String("db", d.target.redacted))
	return nil
}

// stop closes the pool, waiting for running queries until ctx ends.
func (d *database) stop(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- d.sqlDB.Close() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("fxrepo: close %s: %w", d.target.driver, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fxrepo: close %s: %w", d.target.driver, ctx.Err())
	}
}

// Open builds the instrumented *gorm.DB for cfg, connects with retry until
// ctx ends, applies the migrations and auto-migrates the models: what the
// Module does at start, for use without Fx. Close it with db.DB() and
// Close.
func Open(ctx context.Context, cfg Config, o Options) (*gorm.DB, error) {
	d, err := newDatabase(cfg, o)
	if err != nil {
		return nil, err
	}
	if err := d.start(ctx); err != nil {
		return nil, err
	}
	return d.gdb, nil
}
