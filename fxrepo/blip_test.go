package fxrepo_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// terminateBackends ends every session on the database but the caller's,
// as a failover or pg_terminate_backend does, waits until they are gone
// (each has sent its FATAL message and closed its socket) and returns how
// many there were.
func terminateBackends(t *testing.T, dsn string) int {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer func() { _ = c.Close(ctx) }()
	var n int
	require.NoError(t, c.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n))
	require.Eventually(t, func() bool {
		var left int
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left))
		return left == 0
	}, 10*time.Second, 5*time.Millisecond)
	return n
}

// TestFirstRequestsAfterBackendsTerminated: the pool's connections were all
// used within the last second (pgx pings only connections idle longer),
// then every backend is terminated. The next 20 operations, reads outside
// a unit of work and units of work that read and write, all succeed: the
// dead connections are found before a statement is sent on them.
func TestFirstRequestsAfterBackendsTerminated(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	ctx := context.Background()
	cfg := fxrepo.DefaultConfig()
	cfg.Driver, cfg.DSN = fxrepo.DriverPostgres, dsn
	db := openDB(t, cfg, fxrepo.DatabaseOptions{Models: []any{&Widget{}}})
	uow := fxrepo.NewUnitOfWork(db)
	widgets := fxrepo.NewRepository[Widget, int64](db)
	w := &Widget{Name: "w"}
	require.NoError(t, widgets.Create(ctx, w))

	for round := range 3 {
		// Use every pooled connection, twice, so each was reset recently.
		for range 2 {
			var wg sync.WaitGroup
			for range cfg.MaxIdleConns {
				wg.Go(func() { require.NoError(t, db.Exec("SELECT pg_sleep(0.05)").Error) })
			}
			wg.Wait()
		}
		require.Positive(t, terminateBackends(t, dsn), "round %d", round)
		var failed []error
		for i := range 20 {
			var err error
			if i%2 == 0 {
				_, err = widgets.Get(ctx, w.ID)
			} else {
				err = uow.Do(ctx, func(ctx context.Context) error {
					got, err := widgets.Get(ctx, w.ID)
					if err != nil {
						return err
					}
					got.Color = fmt.Sprint(round, i)
					return widgets.Update(ctx, got)
				})
			}
			if err != nil {
				failed = append(failed, err)
			}
		}
		require.Empty(t, failed, "round %d", round)
	}
}

// flakyPool is a connection pool whose BEGIN fails the first times, as on
// a connection the server has terminated (nothing was executed).
type flakyPool struct {
	*sql.DB
	failures atomic.Int32
	err      error
}

func (p *flakyPool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error) {
	if p.failures.Add(-1) >= 0 {
		return nil, p.err
	}
	return p.DB.BeginTx(ctx, opts)
}

func flakyDB(t *testing.T, failures int32, err error) (*gorm.DB, *flakyPool) {
	t.Helper()
	raw, err2 := sql.Open(sqlite.DriverName, "file:"+t.TempDir()+"/flaky.db?_pragma=busy_timeout(5000)")
	require.NoError(t, err2)
	t.Cleanup(func() { _ = raw.Close() })
	p := &flakyPool{DB: raw, err: err}
	p.failures.Store(failures)
	db, err2 := gorm.Open(sqlite.Dialector{Conn: p}, &gorm.Config{SkipDefaultTransaction: true})
	require.NoError(t, err2)
	require.NoError(t, db.AutoMigrate(&Note{}))
	return db, p
}

var terminated = &pgconn.PgError{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"}

func TestUnitOfWorkRetriesAFailedBegin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	core, logs := observer.New(zap.InfoLevel)

	// Two dead connections, then a live one: one call, fn runs once.
	db, _ := flakyDB(t, 2, fmt.Errorf("wrapped by the driver: %w", terminated))
	uow := fxrepo.NewUnitOfWork(db, fxrepo.WithLogger(zap.New(core)))
	runs := 0
	require.NoError(t, uow.Do(ctx, func(ctx context.Context) error {
		runs++
		return fxrepo.NewRepository[Note, string](db).Create(ctx, &Note{ID: "n1"})
	}))
	require.Equal(t, 1, runs)
	require.Len(t, logs.FilterMessage("retrying transaction after losing its connection").All(), 2)

	// More dead connections than retries: the caller gets the error,
	// classified unavailable, and fn never ran.
	db, _ = flakyDB(t, 10, fmt.Errorf("wrapped by the driver: %w", terminated))
	runs = 0
	err := fxrepo.NewUnitOfWork(db, fxrepo.WithRetries(2)).Do(ctx, func(context.Context) error { runs++; return nil })
	require.ErrorContains(t, err, "fxrepo: transaction failed after 2 retries: fxrepo: begin transaction:")
	require.Zero(t, runs)
	c := fxcore.Classify(err, fxrepo.Classify)
	require.Equal(t, fxcore.ClassUnavailable, c.Class)
	require.Equal(t, fxrepo.MessageUnavailable, c.Message)

	// A BEGIN refused for another reason is not retried.
	db, p := flakyDB(t, 10, &pgconn.PgError{Severity: "ERROR", Code: "42501", Message: "permission denied"})
	err = fxrepo.NewUnitOfWork(db).Do(ctx, func(context.Context) error { return nil })
	require.ErrorContains(t, err, "permission denied")
	require.EqualValues(t, 9, p.failures.Load(), "one attempt only")
}

func TestUnitOfWorkRetriesFnOnLostConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := flakyDB(t, 0, nil)
	uow := fxrepo.NewUnitOfWork(db)
	runs := 0
	require.NoError(t, uow.Do(ctx, func(ctx context.Context) error {
		runs++
		if runs == 1 {
			return fmt.Errorf("orders: insert: %w", terminated) // the server rolled back
		}
		return nil
	}))
	require.Equal(t, 2, runs)

	// Other errors from fn come back as they are, at once.
	boom := errors.New("boom")
	runs = 0
	require.Same(t, boom, uow.Do(ctx, func(context.Context) error { runs++; return boom }))
	require.Equal(t, 1, runs)
}
