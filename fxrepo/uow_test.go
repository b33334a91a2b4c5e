package fxrepo_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

func TestUnitOfWork(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		count := func() int64 {
			n, err := f.widgets.Count(ctx)
			require.NoError(t, err)
			return n
		}

		// Commit.
		var committed atomic.Int32
		require.False(t, fxrepo.InTx(ctx))
		require.NoError(t, f.uow.Do(ctx, func(ctx context.Context) error {
			require.True(t, fxrepo.InTx(ctx))
			fxrepo.AfterCommit(ctx, func() { committed.Add(1) })
			require.Zero(t, committed.Load(), "after commit, not before")
			return f.widgets.Create(ctx, &Widget{Name: "kept"})
		}))
		require.EqualValues(t, 1, committed.Load())
		require.EqualValues(t, 1, count())

		// Rollback on error: the error comes back as is.
		boom := errors.New("boom")
		err := f.uow.Do(ctx, func(ctx context.Context) error {
			fxrepo.AfterCommit(ctx, func() { committed.Add(100) })
			require.NoError(t, f.widgets.Create(ctx, &Widget{Name: "rolled-back"}))
			n, err := f.widgets.Count(ctx)
			require.NoError(t, err)
			require.EqualValues(t, 2, n, "the transaction sees its own write")
			return boom
		})
		require.Same(t, boom, err)
		require.EqualValues(t, 1, count())
		require.EqualValues(t, 1, committed.Load(), "AfterCommit never runs on rollback")

		// Rollback on panic, re-raised.
		require.PanicsWithValue(t, "kaboom", func() {
			_ = f.uow.Do(ctx, func(ctx context.Context) error {
				require.NoError(t, f.widgets.Create(ctx, &Widget{Name: "panicked"}))
				panic("kaboom")
			})
		})
		require.EqualValues(t, 1, count())
		// The pool is healthy afterwards (the connection was released).
		require.NoError(t, f.uow.Do(ctx, func(ctx context.Context) error {
			return f.widgets.Create(ctx, &Widget{Name: "after-panic"})
		}))
		require.EqualValues(t, 2, count())

		// Nested Do joins the outer transaction: the outer rollback undoes
		// the inner write, AfterCommit waits for the outermost commit.
		err = f.uow.Do(ctx, func(outer context.Context) error {
			require.NoError(t, f.uow.Do(outer, func(inner context.Context) error {
				require.True(t, fxrepo.InTx(inner))
				require.Same(t, fxrepo.DB(outer, nil).Statement.ConnPool, fxrepo.DB(inner, nil).Statement.ConnPool, "same transaction")
				return f.widgets.Create(inner, &Widget{Name: "inner"})
			}))
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.EqualValues(t, 2, count(), "inner write rolled back with the outer")

		var order []string
		require.NoError(t, f.uow.Do(ctx, func(outer context.Context) error {
			fxrepo.AfterCommit(outer, func() { order = append(order, "outer") })
			err := f.uow.Do(outer, func(inner context.Context) error {
				fxrepo.AfterCommit(inner, func() { order = append(order, "inner") })
				return f.widgets.Create(inner, &Widget{Name: "inner-ok"})
			})
			require.Empty(t, order, "nothing runs at the inner Do's end")
			return err
		}))
		require.Equal(t, []string{"outer", "inner"}, order)
		require.EqualValues(t, 3, count())

		// An inner error the outer fn swallows does not roll back by itself.
		require.NoError(t, f.uow.Do(ctx, func(outer context.Context) error {
			_ = f.uow.Do(outer, func(inner context.Context) error {
				require.NoError(t, f.widgets.Create(inner, &Widget{Name: "swallowed"}))
				return boom
			})
			return nil
		}))
		require.EqualValues(t, 4, count())

		// Without a transaction AfterCommit runs at once; DB is the plain handle.
		ran := false
		fxrepo.AfterCommit(ctx, func() { ran = true })
		require.True(t, ran)
		require.Equal(t, ctx, fxrepo.DB(ctx, f.db).Statement.Context)

		// A unique conflict inside Do rolls back the whole transaction.
		err = f.uow.Do(ctx, func(ctx context.Context) error {
			if err := f.widgets.Create(ctx, &Widget{Name: "first-of-two"}); err != nil {
				return err
			}
			return f.widgets.Create(ctx, &Widget{Name: "kept"})
		})
		require.ErrorIs(t, err, fxrepo.ErrConflict)
		require.EqualValues(t, 4, count())

		// A cancelled context: begin fails, nothing runs.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		called := false
		err = f.uow.Do(cctx, func(context.Context) error { called = true; return nil })
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, called)

		// Read-only and isolation options are accepted by both drivers.
		require.NoError(t, f.uow.Do(ctx, func(ctx context.Context) error {
			_, err := f.widgets.Count(ctx)
			return err
		}, fxrepo.WithReadOnly(), fxrepo.WithIsolation(sql.LevelSerializable)))
	})
}

// TestUnitOfWorkWithoutFx: NewUnitOfWork works on a plain Open'ed DB.
func TestUnitOfWorkWithoutFx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cfg := fxrepo.DefaultConfig()
	cfg.DSN = ":memory:"
	db := openDB(t, cfg, fxrepo.DatabaseOptions{Models: []any{&Widget{}}})
	repo := fxrepo.NewRepository[Widget, int64](db)
	uow := fxrepo.NewUnitOfWork(db)
	require.NoError(t, uow.Do(ctx, func(ctx context.Context) error { return repo.Create(ctx, &Widget{Name: "a"}) }))
	n, err := repo.Count(ctx)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestSerializationFailureRetried provokes a write skew between two
// SERIALIZABLE transactions on PostgreSQL: one fails with 40001 and the
// unit of work re-runs it to success.
func TestSerializationFailureRetried(t *testing.T) {
	t.Parallel()
	// SQLite serializes writers (BEGIN IMMEDIATE), so this is PostgreSQL only.
	b := backend{driver: "postgres", env: []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + pgtest.NewDatabase(t)}}
	{
		core, logs := observer.New(zap.InfoLevel)
		f := newFixture(t, b, fx.Decorate(func() *zap.Logger { return zap.New(core) }))
		ctx := context.Background()

		skew := func(uow fxrepo.UnitOfWork) (attempts int32, errs []error) {
			var total atomic.Int32
			var ready sync.WaitGroup
			ready.Add(2)
			errs = make([]error, 2)
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() {
					first := true
					errs[i] = uow.Do(ctx, func(ctx context.Context) error {
						total.Add(1)
						var n int64
						if err := fxrepo.DB(ctx, f.db).Model(&Widget{}).Where("color = ?", "skew").Count(&n).Error; err != nil {
							return err
						}
						if first {
							// Both transactions have read before either writes.
							first = false
							ready.Done()
							ready.Wait()
						}
						return f.widgets.Create(ctx, &Widget{Name: fmt.Sprintf("skew-%d-%d-%d", i, n, total.Load()), Color: "skew"})
					}, fxrepo.WithIsolation(sql.LevelSerializable))
				})
			}
			wg.Wait()
			return total.Load(), errs
		}

		attempts, errs := skew(f.uow)
		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		require.EqualValues(t, 3, attempts, "one of the two was re-run once")
		n, err := f.widgets.Count(ctx, func(db *gorm.DB) *gorm.DB { return db.Where("color = ?", "skew") })
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		retried := logs.FilterMessage("retrying transaction after a serialization failure").All()
		require.Len(t, retried, 1)

		// Without retries the failure reaches the caller, as 40001.
		attempts, errs = skew(fxrepo.NewUnitOfWork(f.db, fxrepo.WithRetries(0)))
		require.EqualValues(t, 2, attempts)
		failed := errs[0]
		if failed == nil {
			failed = errs[1]
		}
		require.Error(t, failed)
		require.True(t, fxrepo.IsRetryable(failed), "%v", failed)
		var pg *pgconn.PgError
		require.ErrorAs(t, failed, &pg)
		require.Equal(t, "40001", pg.Code)
	}
}

// TestDeadlockRetried: two transactions lock two rows in opposite order;
// PostgreSQL aborts one with 40P01 and the unit of work re-runs it.
func TestDeadlockRetried(t *testing.T) {
	t.Parallel()
	b := backend{driver: "postgres", env: []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + pgtest.NewDatabase(t)}}
	f := newFixture(t, b)
	ctx := context.Background()
	a, c := &Widget{Name: "a"}, &Widget{Name: "c"}
	require.NoError(t, f.widgets.Create(ctx, a))
	require.NoError(t, f.widgets.Create(ctx, c))

	var attempts atomic.Int32
	var locked sync.WaitGroup
	locked.Add(2)
	lockBoth := func(first, second int64) error {
		once := true
		return f.uow.Do(ctx, func(ctx context.Context) error {
			attempts.Add(1)
			db := fxrepo.DB(ctx, f.db)
			if err := db.Exec("SET LOCAL deadlock_timeout = '50ms'").Error; err != nil {
				return err
			}
			if err := db.Exec("UPDATE widgets SET color = 'x' WHERE id = ?", first).Error; err != nil {
				return err
			}
			if once {
				once = false
				locked.Done()
				locked.Wait() // each holds one row and wants the other
			}
			return db.Exec("UPDATE widgets SET color = 'y' WHERE id = ?", second).Error
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = lockBoth(a.ID, c.ID) })
	wg.Go(func() { errs[1] = lockBoth(c.ID, a.ID) })
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.EqualValues(t, 3, attempts.Load(), "the deadlock victim was re-run once")
}

// TestPreparedStatements runs the repository and a unit of work with
// MARTY_DB_PREPARE_STMT=true.
func TestPreparedStatements(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, backend{driver: b.driver, env: append(b.env, "MARTY_DB_PREPARE_STMT=true")})
		ctx := context.Background()
		for i := range 3 {
			require.NoError(t, f.uow.Do(ctx, func(ctx context.Context) error {
				w := &Widget{Name: fmt.Sprint("p", i)}
				if err := f.widgets.Create(ctx, w); err != nil {
					return err
				}
				w.Color = "green"
				return f.widgets.Update(ctx, w)
			}))
		}
		n, err := f.widgets.Count(ctx, func(db *gorm.DB) *gorm.DB { return db.Where("color = ?", "green") })
		require.NoError(t, err)
		require.EqualValues(t, 3, n)
		_, err = f.widgets.Get(ctx, 999)
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
	})
}
