package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// benchWidget is a typical entity: version, timestamps, soft delete.
type benchWidget struct {
	ID        int64  `gorm:"primaryKey"`
	Name      string `gorm:"uniqueIndex;not null"`
	Color     string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// repoBackends opens, per driver, the fxrepo *gorm.DB (instrumented:
// spans on the global no-op provider, query histogram, pool metrics, zap
// logger) and a bare gorm.Open on the same database (no plugins, silent
// logger, SkipDefaultTransaction like fxrepo).
func repoBackends(b *testing.B, fn func(b *testing.B, fx, bare *gorm.DB)) {
	b.Run("sqlite", func(b *testing.B) {
		dsn := "file:" + filepath.Join(b.TempDir(), "bench.db")
		cfg := fxrepo.DefaultConfig()
		cfg.DSN = dsn
		db := openRepo(b, cfg)
		// The bare handle gets its own file: two pools writing one SQLite
		// file invalidate each other's page cache and skew the comparison.
		bareDSN := "file:" + filepath.Join(b.TempDir(), "bare.db")
		bare, err := gorm.Open(sqlite.Open(bareDSN+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_txlock=immediate"),
			&gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
		if err != nil {
			b.Fatal(err)
		}
		closeAtEnd(b, bare)
		if err := bare.AutoMigrate(&benchWidget{}); err != nil {
			b.Fatal(err)
		}
		fn(b, db, bare)
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := pgtest.NewDatabase(b)
		cfg := fxrepo.DefaultConfig()
		cfg.Driver, cfg.DSN = fxrepo.DriverPostgres, dsn
		db := openRepo(b, cfg)
		bare, err := gorm.Open(postgres.Open(dsn), &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
		if err != nil {
			b.Fatal(err)
		}
		closeAtEnd(b, bare)
		fn(b, db, bare)
	})
}

func openRepo(b *testing.B, cfg fxrepo.Config) *gorm.DB {
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{
		Registerer: prometheus.NewRegistry(),
		Models:     []any{&benchWidget{}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop(context.Background()) })
	return d.DB()
}

func closeAtEnd(b *testing.B, db *gorm.DB) {
	sqlDB, err := db.DB()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sqlDB.Close() })
}

// BenchmarkRepoGet: Repository.Get next to the same lookup in raw GORM
// (db.First by primary key) on the same instrumented handle, and on a bare
// gorm.Open.
func BenchmarkRepoGet(b *testing.B) {
	repoBackends(b, func(b *testing.B, db, bare *gorm.DB) {
		ctx := context.Background()
		repo := fxrepo.NewRepository[benchWidget, int64](db)
		w := &benchWidget{Name: "get-me", Color: "red"}
		if err := repo.Create(ctx, w); err != nil {
			b.Fatal(err)
		}
		bareW := &benchWidget{Name: "get-me-bare", Color: "red"}
		if err := bare.Create(bareW).Error; err != nil {
			b.Fatal(err)
		}
		b.Run("repository", func(b *testing.B) {
			for b.Loop() {
				if _, err := repo.Get(ctx, w.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("gorm", func(b *testing.B) {
			for b.Loop() {
				var got benchWidget
				if err := db.WithContext(ctx).First(&got, w.ID).Error; err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bare-gorm", func(b *testing.B) {
			for b.Loop() {
				var got benchWidget
				if err := bare.WithContext(ctx).First(&got, bareW.ID).Error; err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkRepoCreate: Repository.Create next to db.Create.
func BenchmarkRepoCreate(b *testing.B) {
	var n atomic.Int64
	repoBackends(b, func(b *testing.B, db, bare *gorm.DB) {
		ctx := context.Background()
		repo := fxrepo.NewRepository[benchWidget, int64](db)
		b.Run("repository", func(b *testing.B) {
			for b.Loop() {
				if err := repo.Create(ctx, &benchWidget{Name: fmt.Sprint("r", n.Add(1)), Color: "red"}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("gorm", func(b *testing.B) {
			for b.Loop() {
				if err := db.WithContext(ctx).Create(&benchWidget{Name: fmt.Sprint("g", n.Add(1)), Color: "red", Version: 1}).Error; err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("bare-gorm", func(b *testing.B) {
			for b.Loop() {
				if err := bare.WithContext(ctx).Create(&benchWidget{Name: fmt.Sprint("b", n.Add(1)), Color: "red", Version: 1}).Error; err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkRepoPaired alternates the three variants op by op inside one
// loop, so a busy shared machine slows them alike, and reports each one's
// time per call and the ratios repository/gorm (same instrumented handle)
// and repository/bare-gorm. This is the figure to read on a noisy box.
func BenchmarkRepoPaired(b *testing.B) {
	repoBackends(b, func(b *testing.B, db, bare *gorm.DB) {
		ctx := context.Background()
		repo := fxrepo.NewRepository[benchWidget, int64](db)
		w := &benchWidget{Name: "paired", Color: "red"}
		if err := repo.Create(ctx, w); err != nil {
			b.Fatal(err)
		}
		bareW := &benchWidget{Name: "paired-bare", Color: "red"}
		if err := bare.Create(bareW).Error; err != nil {
			b.Fatal(err)
		}
		var n atomic.Int64
		cases := map[string][3]func() error{
			"get": {
				func() error { _, err := repo.Get(ctx, w.ID); return err },
				func() error { var g benchWidget; return db.WithContext(ctx).First(&g, w.ID).Error },
				func() error { var g benchWidget; return bare.WithContext(ctx).First(&g, bareW.ID).Error },
			},
			"create": {
				func() error { return repo.Create(ctx, &benchWidget{Name: fmt.Sprint("pr", n.Add(1)), Color: "red"}) },
				func() error {
					return db.WithContext(ctx).Create(&benchWidget{Name: fmt.Sprint("pg", n.Add(1)), Color: "red", Version: 1}).Error
				},
				func() error {
					return bare.WithContext(ctx).Create(&benchWidget{Name: fmt.Sprint("pb", n.Add(1)), Color: "red", Version: 1}).Error
				},
			},
		}
		for _, name := range []string{"get", "create"} {
			fns := cases[name]
			b.Run(name, func(b *testing.B) {
				var spent [3]time.Duration
				for i := 0; b.Loop(); i++ {
					for k := range 3 {
						j := (i + k) % 3 // rotate who goes first
						start := time.Now()
						if err := fns[j](); err != nil {
							b.Fatal(err)
						}
						spent[j] += time.Since(start)
					}
				}
				per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
				b.ReportMetric(per(spent[0]), "repo-ns/call")
				b.ReportMetric(per(spent[1]), "gorm-ns/call")
				b.ReportMetric(per(spent[2]), "bare-ns/call")
				b.ReportMetric(per(spent[0])/per(spent[1]), "repo/gorm")
				b.ReportMetric(per(spent[0])/per(spent[2]), "repo/bare")
			})
		}
	})
}
