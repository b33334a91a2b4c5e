package fxrepo

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
)

// DatabaseOptions are the collaborators of NewDatabase; every field is
// optional.
type DatabaseOptions struct {
	// Logger receives GORM's log, connection retries and migrations.
	// nil: zap.NewNop().
	Logger *zap.Logger
	// Info names the default SQLite file, "<Info.Name>.db". Zero value: not
	// production, the name of the binary.
	Info fxcore.ServiceInfo
	// Registerer gets the query histogram and the pool metrics. nil: metrics
	// are not registered.
	Registerer prometheus.Registerer
	// TracerProvider makes the statement spans. nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Models (as given to AsModel) are auto-migrated at Start when
	// cfg.AutoMigrate is on; else their tables are checked (cfg.TableCheck).
	Models []any
	// Migrations (as given to AsMigrations) are applied at Start when
	// cfg.Migrate is on.
	Migrations []Migrations
}

// Database is the instrumented *gorm.DB with its lifecycle: NewDatabase
// builds it without connecting, Start connects (with retry), migrates and
// checks the models' tables, Stop closes the pool. The Module provides its
// DB() as *gorm.DB; without Fx:
//
//	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{Logger: log, Models: []any{&Order{}}})
//	if err != nil { ... }
//	if err := d.Start(ctx); err != nil { ... }
//	defer d.Stop(context.Background())
//	orders := fxrepo.NewRepository[Order, int64](d.DB())
type Database struct {
	cfg    Config
	target target
	gdb    *gorm.DB
	sqlDB  *sql.DB
	log    *zap.Logger
	opts   DatabaseOptions

	// tablesMissing is set while a model's table is missing with
	// cfg.TableCheck "readiness": Check fails until it exists.
	tablesMissing atomic.Bool
}

// NewDatabase validates cfg and builds the instrumented *gorm.DB (spans,
// metrics, zap log) without connecting: nothing is opened or written
// until Start.
func NewDatabase(cfg Config, opts DatabaseOptions) (*Database, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxrepo: invalid config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	t, err := resolve(cfg, serviceName(opts.Info))
	if err != nil {
		return nil, err
	}
	dialector, err := t.dialector()
	if err != nil {
		return nil, err
	}
	log := opts.Logger.Named("db")
	gdb, err := gorm.Open(dialector, &gorm.Config{
		Logger:                 newZapLogger(opts.Logger, cfg.SlowQueryThreshold, cfg.QueryValues),
		SkipDefaultTransaction: true,
		PrepareStmt:            cfg.PrepareStmt,
		// GORM's statement cache starts a cleanup goroutine that never
		// exits unless the TTL is exactly its "no eviction" value; the
		// cache stays bounded by size (LRU) either way.
		PrepareStmtTTL:       24 * 365 * 10 * time.Hour,
		DisableAutomaticPing: true,
		NowFunc:              func() time.Time { return time.Now().UTC().Truncate(timePrecision) },
	})
	if err != nil {
		return nil, fmt.Errorf("fxrepo: open %s at %s: %w", t.driver, t.redacted, t.scrub(err))
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("fxrepo: open %s at %s: %w", t.driver, t.redacted, err)
	}
	configurePool(sqlDB, cfg, t)
	fail := func(what string, err error) (*Database, error) {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("fxrepo: %s: %w", what, err)
	}
	if err := registerTimeTruncation(gdb); err != nil {
		return fail("install time truncation", err)
	}
	if err := gdb.Use(tracingPlugin(opts.TracerProvider, cfg.QueryValues)); err != nil {
		return fail("install tracing", err)
	}
	if opts.Registerer != nil {
		m, err := newQueryMetrics(opts.Registerer)
		if err == nil {
			err = gdb.Use(m)
		}
		if err == nil {
			err = opts.Registerer.Register(collectors.NewDBStatsCollector(sqlDB, t.name))
		}
		if err != nil {
			return fail("metrics", err)
		}
	}
	return &Database{cfg: cfg, target: t, gdb: gdb, sqlDB: sqlDB, log: log, opts: opts}, nil
}

// serviceName is the service's name, else the binary's.
func serviceName(info fxcore.ServiceInfo) string {
	if info.Name != "" || len(os.Args) == 0 {
		return info.Name
	}
	name := filepath.Base(os.Args[0])
	return strings.TrimSuffix(name, filepath.Ext(name))
}

// DB returns the *gorm.DB. Every query should go through DB(ctx, db), so
// that it joins the unit of work in ctx.
func (d *Database) DB() *gorm.DB { return d.gdb }

// Start connects, pinging with retry and backoff until ctx ends or
// cfg.ConnectTimeout passes, applies the migrations, auto-migrates the
// models and checks that every model's table exists (cfg.TableCheck). On
// failure the pool is closed; the error names the driver and the redacted
// target, never the password.
func (d *Database) Start(ctx context.Context) (err error) {
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
	} else if err := d.checkTablesAtStart(ctx); err != nil {
		return err
	}
	d.log.Info("database ready", zap.String("driver", d.target.driver), zap.String("db", d.target.redacted))
	return nil
}

// Stop closes the pool, waiting for running queries until ctx ends.
func (d *Database) Stop(ctx context.Context) error {
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

// Check is the readiness check the Module registers: a ping and, while a
// model's table is missing with cfg.TableCheck "readiness", the tables
// again. Its error names the redacted target, never the password.
func (d *Database) Check(ctx context.Context) error {
	if err := d.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("fxrepo: ping %s at %s: %w", d.target.driver, d.target.redacted, d.target.scrub(err))
	}
	if !d.tablesMissing.Load() {
		return nil
	}
	if err := d.checkTables(ctx); err != nil {
		return err
	}
	d.tablesMissing.Store(false)
	d.log.Info("every model's table exists now")
	return nil
}
