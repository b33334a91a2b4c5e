package fxcache_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// Item is the test entity.
type Item struct {
	ID      int64  `gorm:"primaryKey" json:"id"`
	Status  string `json:"status"`
	Version int64  `json:"version"`
}

// forEachDB runs fn on SQLite and, when MARTY_TEST_POSTGRES_DSN is set, on
// a fresh PostgreSQL database.
func forEachDB(t *testing.T, fn func(t *testing.T, driver, dsn string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, "sqlite", "file:"+filepath.Join(t.TempDir(), "items.db"))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, "postgres", pgtest.NewDatabase(t))
	})
}

func openDB(t *testing.T, driver, dsn string) *gorm.DB {
	t.Helper()
	cfg := fxrepo.DefaultConfig()
	cfg.Driver, cfg.DSN = driver, dsn
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{Models: []any{&Item{}}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, d.Start(ctx))
	t.Cleanup(func() { require.NoError(t, d.Stop(context.Background())) })
	return d.DB()
}

func TestRepositoryInvalidatesAfterCommitOnly(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, driver, dsn string) {
		db := openDB(t, driver, dsn)
		uow := fxrepo.NewUnitOfWork(db)
		c := newCache(t, fxcache.DefaultConfig(), fxcache.CacheOptions{})
		repo := fxcache.NewRepository[Item, int64](fxrepo.NewRepository[Item, int64](db), c, "", fxcache.TypedOptions{})
		require.NoError(t, repo.Err())
		view := repo.Cache()
		require.Equal(t, "Item", view.Name())
		ctx := context.Background()

		it := &Item{Status: "a"}
		require.NoError(t, repo.Create(ctx, it))
		got, err := repo.Get(ctx, it.ID)
		require.NoError(t, err)
		require.Equal(t, "a", got.Status)
		key := "1"
		require.Equal(t, int64(1), it.ID)
		cached, ok := view.Get(ctx, key)
		require.True(t, ok, "Get reads through the cache")
		require.Equal(t, "a", cached.Status)

		got.Status = "mutated by the caller"
		again, err := repo.Get(ctx, it.ID)
		require.NoError(t, err)
		require.Equal(t, "a", again.Status, "Get hands out a copy")

		// Commit: invalidated after the commit, never before.
		err = uow.Do(ctx, func(ctx context.Context) error {
			upd := *again
			upd.Status = "b"
			require.NoError(t, repo.Update(ctx, &upd))
			inTx, err := repo.Get(ctx, it.ID)
			require.NoError(t, err)
			require.Equal(t, "b", inTx.Status, "inside the unit of work Get reads its own writes")
			v, ok := view.Get(context.Background(), key)
			require.True(t, ok, "not invalidated before the commit")
			require.Equal(t, "a", v.Status)
			return nil
		})
		require.NoError(t, err)
		_, ok = view.Get(ctx, key)
		require.False(t, ok, "invalidated once committed")
		got, err = repo.Get(ctx, it.ID)
		require.NoError(t, err)
		require.Equal(t, "b", got.Status)

		// Rollback: never invalidated.
		boom := errors.New("rollback")
		err = uow.Do(ctx, func(ctx context.Context) error {
			upd := *got
			upd.Status = "c"
			require.NoError(t, repo.Update(ctx, &upd))
			require.NoError(t, repo.Delete(ctx, it.ID))
			return boom
		})
		require.ErrorIs(t, err, boom)
		v, ok := view.Get(ctx, key)
		require.True(t, ok, "a rolled back update or delete invalidates nothing")
		require.Equal(t, "b", v.Status)

		// Delete, then a remembered not-found; Create forgets it.
		require.NoError(t, uow.Do(ctx, func(ctx context.Context) error { return repo.Delete(ctx, it.ID) }))
		for range 2 {
			_, err = repo.Get(ctx, it.ID)
			require.ErrorIs(t, err, fxrepo.ErrNotFound)
			var re *fxrepo.Error
			require.ErrorAs(t, err, &re, "a remembered not-found is the repository's error")
		}
		require.NoError(t, repo.Create(ctx, &Item{ID: 100, Status: "new"}))
		_, err = repo.Get(ctx, 99)
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
		require.NoError(t, uow.Do(ctx, func(ctx context.Context) error { return repo.Create(ctx, &Item{ID: 99, Status: "late"}) }))
		got, err = repo.Get(ctx, 99)
		require.NoError(t, err, "Create forgets the remembered not-found")
		require.Equal(t, "late", got.Status)

		// A stale update invalidates too: the cache held an old version.
		cur, err := repo.Get(ctx, 99)
		require.NoError(t, err)
		stale := *cur
		require.NoError(t, db.Model(&Item{}).Where("id = ?", 99).Updates(map[string]any{"status": "behind our back", "version": cur.Version + 1}).Error)
		stale.Status = "x"
		require.ErrorIs(t, repo.Update(ctx, &stale), fxrepo.ErrConflict)
		got, err = repo.Get(ctx, 99)
		require.NoError(t, err)
		require.Equal(t, "behind our back", got.Status)
	})
}

// TestSecondReplicaSeesCommittedUpdate runs two app instances of one
// service on one database, one Redis and one NATS: an update committed on
// one is seen by the other through the Invalidated event (its in-process
// tier would otherwise keep the old value for MARTY_CACHE_LOCAL_TTL); a
// rolled back one changes nothing.
func TestSecondReplicaSeesCommittedUpdate(t *testing.T) {
	t.Parallel()
	url, prefix := sharedRedis(t)
	forEachDB(t, func(t *testing.T, driver, dsn string) {
		prefix := prefix + "-" + driver
		t.Cleanup(func() { deleteKeys(t, url, prefix) })
		natsURL := natsdev.RunForTest(t)
		type replica struct {
			app  *fxtest.App
			repo *fxcache.Repository[Item, int64]
			uow  fxrepo.UnitOfWork
		}
		start := func() replica {
			var r replica
			var db *gorm.DB
			var c *fxcache.Cache
			r.app = fxtest.New(t,
				fxtest.WithModules(append(append([]fx.Option{}, martyfx.Modules...), natsjs.Module, fxcache.Module)...),
				fxtest.Env("MARTY_SERVICE_NAME=items", "MARTY_DB_DRIVER="+driver, "MARTY_DB_DSN="+dsn,
					"MARTY_NATS_URL="+natsURL, "MARTY_CACHE_URL="+url, "MARTY_CACHE_KEY_PREFIX="+prefix),
				fxrepo.AsModel(&Item{}),
				fx.Populate(&db, &c, &r.uow),
			)
			r.repo = fxcache.NewRepository[Item, int64](fxrepo.NewRepository[Item, int64](db), c, "items", fxcache.TypedOptions{})
			return r
		}
		a, b := start(), start()
		ctx := context.Background()
		it := &Item{Status: "v1"}
		require.NoError(t, a.repo.Create(ctx, it))
		got, err := b.repo.Get(ctx, it.ID)
		require.NoError(t, err)
		require.Equal(t, "v1", got.Status)
		_, err = a.repo.Get(ctx, it.ID)
		require.NoError(t, err)
		rdb := rawClient(t, url)
		key := prefix + ":items:1"
		require.Eventually(t, func() bool { return rdb.Exists(ctx, key).Val() == 1 }, 5*time.Second, 5*time.Millisecond)

		boom := errors.New("rollback")
		require.ErrorIs(t, a.uow.Do(ctx, func(ctx context.Context) error {
			upd := *got
			upd.Status = "rolled back"
			require.NoError(t, a.repo.Update(ctx, &upd))
			return boom
		}), boom)
		require.Equal(t, int64(1), rdb.Exists(ctx, key).Val(), "a rollback leaves Redis alone")
		v, ok := b.repo.Cache().Get(ctx, "1")
		require.True(t, ok)
		require.Equal(t, "v1", v.Status)

		require.NoError(t, a.uow.Do(ctx, func(ctx context.Context) error {
			upd := *got
			upd.Status = "v2"
			return a.repo.Update(ctx, &upd)
		}))
		got, err = a.repo.Get(ctx, it.ID)
		require.NoError(t, err)
		require.Equal(t, "v2", got.Status, "the writer reads its write at once")
		require.Eventually(t, func() bool {
			got, err := b.repo.Get(ctx, it.ID)
			return err == nil && got.Status == "v2"
		}, 20*time.Second, 10*time.Millisecond, "the other replica drops its copy on the event")
	})
}
