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
		bare, err := gorm.Open(sqlite.Open(dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_txlock=immediate"),
			&gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true})
		if err != nil {
			b.Fatal(err)
		}
		closeAtEnd(b, bare)
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
	db, err := fxrepo.Open(context.Background(), cfg, fxrepo.Options{
		Registerer: prometheus.NewRegistry(),
		Models:     []any{&benchWidget{}},
	})
	if err != nil {
		b.Fatal(err)
	}
	closeAtEnd(b, db)
	return db
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
				if err := bare.WithContext(ctx).First(&got, w.ID).Error; err != nil {
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
