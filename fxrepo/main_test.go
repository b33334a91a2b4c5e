package fxrepo_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"

	// SQLite, for the tests on the embedded database.
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Widget has a Version (optimistic locking) and a DeletedAt (soft delete).
type Widget struct {
	ID        int64  `gorm:"primaryKey"`
	Name      string `gorm:"uniqueIndex;not null"`
	Color     string `gorm:"not null;default:''"`
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// Note has a string key, no version and is hard-deleted.
type Note struct {
	ID   string `gorm:"primaryKey"`
	Body string
}

// backend is one database the suite runs on.
type backend struct {
	driver string
	env    []string // MARTY_DB_* for a fresh database
}

// forEachDriver runs fn on SQLite (a file in a temp dir) always, and on
// PostgreSQL (a fresh database) when MARTY_TEST_POSTGRES_DSN is set.
func forEachDriver(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) {
		dsn := "file:" + filepath.Join(t.TempDir(), "test.db")
		fn(t, backend{driver: "sqlite", env: []string{"MARTY_DB_DSN=" + dsn}})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		fn(t, backend{driver: "postgres", env: []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn}})
	})
}

func source(t testing.TB, env ...string) *fxcore.Source {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=repotest"}, env...))
	require.NoError(t, err)
	return src
}

// usesDB makes the app depend on *gorm.DB, so that the Module opens it.
var usesDB = fx.Invoke(func(*gorm.DB) {})

// newApp builds an app with fxrepo on env, not started.
func newApp(t testing.TB, env []string, opts ...fx.Option) *fx.App {
	t.Helper()
	all := append([]fx.Option{fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Replace(source(t, env...))}, opts...)
	app := fx.New(all...)
	require.NoError(t, app.Err())
	return app
}

// startApp builds and starts the app, stopped at cleanup.
func startApp(t testing.TB, env []string, opts ...fx.Option) *fx.App {
	t.Helper()
	app := newApp(t, env, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, app.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, app.Stop(ctx))
	})
	return app
}

// fixture is a started app with the test models.
type fixture struct {
	db      *gorm.DB
	uow     fxrepo.UnitOfWork
	widgets *fxrepo.Repository[Widget, int64]
	notes   *fxrepo.Repository[Note, string]
}

func newFixture(t *testing.T, b backend, opts ...fx.Option) *fixture {
	t.Helper()
	var f fixture
	opts = append(opts, fxrepo.AsModel(&Widget{}, &Note{}), fx.Populate(&f.db, &f.uow))
	startApp(t, b.env, opts...)
	f.widgets = fxrepo.NewRepository[Widget, int64](f.db)
	f.notes = fxrepo.NewRepository[Note, string](f.db)
	return &f
}

func TestMemorySQLiteAndDefaults(t *testing.T) {
	var a, b *gorm.DB
	startApp(t, []string{"MARTY_DB_DSN=:memory:"}, fxrepo.AsModel(&Widget{}), fx.Populate(&a))
	startApp(t, []string{"MARTY_DB_DSN=:memory:"}, fxrepo.AsModel(&Widget{}), fx.Populate(&b))
	ctx := context.Background()
	require.NoError(t, fxrepo.NewRepository[Widget, int64](a).Create(ctx, &Widget{Name: "only-in-a"}))
	n, err := fxrepo.NewRepository[Widget, int64](b).Count(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "each :memory: DSN is its own database")
	sqlDB, err := a.DB()
	require.NoError(t, err)
	require.Equal(t, 1, sqlDB.Stats().MaxOpenConnections, "in-memory SQLite uses one connection")

	// A unit of work on the single connection: queries through DB(ctx, db) use it.
	uow := fxrepo.NewUnitOfWork(a)
	require.NoError(t, uow.Do(ctx, func(ctx context.Context) error {
		return fxrepo.NewRepository[Widget, int64](a).Create(ctx, &Widget{Name: "in-tx"})
	}))

	// The harness' shared-cache form.
	var c *gorm.DB
	startApp(t, []string{"MARTY_DB_DSN=file:harness1?mode=memory&cache=shared"}, fxrepo.AsModel(&Widget{}), fx.Populate(&c))
	require.NoError(t, fxrepo.NewRepository[Widget, int64](c).Create(ctx, &Widget{Name: "x"}))

	// Default: "<service>.db" in the working directory, WAL, foreign keys,
	// busy timeout; auto-migration on in development.
	dir := t.TempDir()
	t.Chdir(dir)
	var d *gorm.DB
	startApp(t, []string{"MARTY_SERVICE_NAME=orders svc", "MARTY_DB_BUSY_TIMEOUT=3s"}, fxrepo.AsModel(&Widget{}), fx.Populate(&d))
	_, err = os.Stat(filepath.Join(dir, "orders_svc.db"))
	require.NoError(t, err)
	var mode string
	var fk, busy int
	require.NoError(t, d.Raw("PRAGMA journal_mode").Scan(&mode).Error)
	require.NoError(t, d.Raw("PRAGMA foreign_keys").Scan(&fk).Error)
	require.NoError(t, d.Raw("PRAGMA busy_timeout").Scan(&busy).Error)
	require.Equal(t, "wal", mode)
	require.Equal(t, 1, fk)
	require.Equal(t, 3000, busy)
	require.True(t, d.Migrator().HasTable(&Widget{}))
}

func TestConfig(t *testing.T) {
	t.Parallel()
	var cfg fxrepo.Config
	app := fx.New(fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Populate(&cfg),
		fx.Replace(source(t, "MARTY_ENV=production")))
	require.NoError(t, app.Err())
	require.False(t, cfg.AutoMigrate, "no auto-migration in production")
	require.True(t, cfg.Migrate)
	require.Equal(t, "sqlite", cfg.Driver)

	app = fx.New(fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Populate(&cfg),
		fx.Replace(source(t, "MARTY_DB_MAX_OPEN_CONNS=3", "MARTY_DB_SLOW_QUERY_THRESHOLD=1s", "MARTY_DB_AUTO_MIGRATE=false")))
	require.NoError(t, app.Err())
	require.Equal(t, 3, cfg.MaxOpenConns)
	require.Equal(t, time.Second, cfg.SlowQueryThreshold)
	require.False(t, cfg.AutoMigrate)

	for env, want := range map[string]string{
		"MARTY_DB_DRIVER=mysql":                `MARTY_DB_DRIVER="mysql": want one of "sqlite", "postgres"`,
		"MARTY_DB_DRIVER=postgres":             `MARTY_DB_DSN (default)="": want a PostgreSQL DSN`,
		"MARTY_DB_CONNECT_BACKOFF=0s":          `MARTY_DB_CONNECT_BACKOFF="0s": want a positive duration`,
		"MARTY_DB_SLOW_QUERY_THRESHOLD=-1s":    `MARTY_DB_SLOW_QUERY_THRESHOLD="-1s"`,
		"MARTY_DB_MAX_OPEN_CONNS=many":         `MARTY_DB_MAX_OPEN_CONNS="many"`,
		"MARTY_DB_TX_RETRIES=-2":               `MARTY_DB_TX_RETRIES`,
		"MARTY_DB_CONNECT_BACKOFF_MAX=1ms":     `MARTY_DB_CONNECT_BACKOFF_MAX="1ms"`,
		"MARTY_DB_CONN_MAX_LIFETIME=yesterday": `MARTY_DB_CONN_MAX_LIFETIME="yesterday"`,
	} {
		app := fx.New(fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Replace(source(t, env)))
		require.ErrorContains(t, app.Err(), want, env)
	}
}

func TestStopClosesPool(t *testing.T) {
	t.Parallel()
	var db *gorm.DB
	app := newApp(t, []string{"MARTY_DB_DSN=file:" + filepath.Join(t.TempDir(), "s.db")}, fx.Populate(&db))
	require.NoError(t, app.Start(context.Background()))
	require.NoError(t, db.Exec("SELECT 1").Error)
	require.NoError(t, app.Stop(context.Background()))
	require.ErrorContains(t, db.Exec("SELECT 1").Error, "database is closed")
	sqlDB, _ := db.DB()
	require.ErrorContains(t, sqlDB.Ping(), "database is closed")
}

// openDB starts a Database without Fx, stopped at cleanup.
func openDB(t testing.TB, cfg fxrepo.Config, opts fxrepo.DatabaseOptions) *gorm.DB {
	t.Helper()
	d, err := fxrepo.NewDatabase(cfg, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, d.Start(ctx))
	t.Cleanup(func() { require.NoError(t, d.Stop(context.Background())) })
	return d.DB()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
