package bench

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// benchOrder is the cached entity (the shape of the example's order).
type benchOrder struct {
	ID         string `gorm:"primaryKey;size:36"`
	CustomerID string `gorm:"size:64;not null"`
	TotalCents int64
	Status     string `gorm:"size:16;not null"`
	Version    int64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func benchRedisURL(b *testing.B) string {
	url := os.Getenv("MARTY_TEST_REDIS_URL")
	if url == "" {
		b.Skip("MARTY_TEST_REDIS_URL is not set: skipping the Redis benchmarks")
	}
	return url
}

func benchCache(b *testing.B, cfg fxcache.Config) *fxcache.Cache {
	c, err := fxcache.NewCache(cfg, fxcache.CacheOptions{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// redisOnly is a config without the in-process tier: every read goes to
// Redis.
func redisOnly(url, prefix string) fxcache.Config {
	cfg := fxcache.DefaultConfig()
	cfg.URL, cfg.KeyPrefix = url, prefix
	cfg.LocalSize = 0
	return cfg
}

func cleanupPrefix(b *testing.B, rdb *redis.Client, prefix string) {
	b.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, prefix+":*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		_ = rdb.Close()
	})
}

// BenchmarkCacheHit: the hit path of GetOrLoad next to the bare library
// under it: otter's GetIfPresent (in-process tier) and go-redis' GET
// (Redis tier, in-process copy disabled).
func BenchmarkCacheHit(b *testing.B) {
	ctx := context.Background()
	o := benchOrder{ID: "o1", CustomerID: "alice", TotalCents: 2699, Status: "pending", Version: 1}
	load := func(context.Context) (benchOrder, error) { return o, nil }
	b.Run("local/fxcache", func(b *testing.B) {
		view := fxcache.Of[benchOrder](benchCache(b, fxcache.DefaultConfig()), "orders", fxcache.TypedOptions{})
		if _, err := view.GetOrLoad(ctx, "o1", load); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := view.GetOrLoad(ctx, "o1", load); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("local/otter", func(b *testing.B) {
		c := otter.Must(&otter.Options[string, benchOrder]{MaximumSize: 100_000, ExpiryCalculator: otter.ExpiryWriting[string, benchOrder](5 * time.Minute)})
		defer c.StopAllGoroutines()
		c.Set("orders:o1", o)
		for b.Loop() {
			if _, ok := c.GetIfPresent("orders:o1"); !ok {
				b.Fatal("miss")
			}
		}
	})
	b.Run("redis/fxcache", func(b *testing.B) {
		url := benchRedisURL(b)
		prefix := "bench-cache-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		opts, _ := redis.ParseURL(url)
		cleanupPrefix(b, redis.NewClient(opts), prefix)
		view := fxcache.Of[benchOrder](benchCache(b, redisOnly(url, prefix)), "orders", fxcache.TypedOptions{})
		view.Set(ctx, "o1", o)
		for b.Loop() {
			if _, err := view.GetOrLoad(ctx, "o1", func(context.Context) (benchOrder, error) {
				b.Fatal("loaded: the Redis hit path was not taken")
				return o, nil
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("redis/go-redis", func(b *testing.B) {
		url := benchRedisURL(b)
		prefix := "bench-cache-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		opts, _ := redis.ParseURL(url)
		opts.DisableIdentity = true
		rdb := redis.NewClient(opts)
		cleanupPrefix(b, rdb, prefix)
		key := prefix + ":orders:o1"
		if err := rdb.Set(ctx, key, `v{"ID":"o1","CustomerID":"alice","TotalCents":2699,"Status":"pending","Version":1}`, time.Minute).Err(); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := rdb.Get(ctx, key).Bytes(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCachedGetOrder: the example's GetOrder read path on PostgreSQL:
// the repository's Get, the cached repository hot key (in-process hit, and
// Redis hit with the in-process copy disabled), and the cost of a miss
// (every call a new key, loading the same row) next to the uncached Get.
func BenchmarkCachedGetOrder(b *testing.B) {
	dsn := pgtest.NewDatabase(b)
	cfg := fxrepo.DefaultConfig()
	cfg.Driver, cfg.DSN = fxrepo.DriverPostgres, dsn
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{Registerer: prometheus.NewRegistry(), Models: []any{&benchOrder{}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop(context.Background()) })
	ctx := context.Background()
	repo := fxrepo.NewRepository[benchOrder, string](d.DB())
	if err := repo.Create(ctx, &benchOrder{ID: "o1", CustomerID: "alice", TotalCents: 2699, Status: "pending"}); err != nil {
		b.Fatal(err)
	}
	get := func(b *testing.B, store fxrepo.Store[benchOrder, string]) {
		for b.Loop() {
			if _, err := store.Get(ctx, "o1"); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("repository", func(b *testing.B) { get(b, repo) })
	b.Run("cached/local-hit", func(b *testing.B) {
		get(b, fxcache.NewRepository[benchOrder, string](repo, benchCache(b, fxcache.DefaultConfig()), "orders", fxcache.TypedOptions{}))
	})
	b.Run("cached/redis-hit", func(b *testing.B) {
		url := benchRedisURL(b)
		prefix := "bench-cache-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		opts, _ := redis.ParseURL(url)
		cleanupPrefix(b, redis.NewClient(opts), prefix)
		get(b, fxcache.NewRepository[benchOrder, string](repo, benchCache(b, redisOnly(url, prefix)), "orders", fxcache.TypedOptions{}))
	})
	miss := func(b *testing.B, c *fxcache.Cache) {
		view := fxcache.Of[benchOrder](c, "orders", fxcache.TypedOptions{})
		load := func(ctx context.Context) (benchOrder, error) {
			o, err := repo.Get(ctx, "o1")
			if err != nil {
				return benchOrder{}, err
			}
			return *o, nil
		}
		i := 0
		for b.Loop() {
			i++
			if _, err := view.GetOrLoad(ctx, strconv.Itoa(i), load); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("cached/local-miss", func(b *testing.B) { miss(b, benchCache(b, fxcache.DefaultConfig())) })
	b.Run("cached/redis-miss", func(b *testing.B) {
		url := benchRedisURL(b)
		prefix := "bench-cache-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		opts, _ := redis.ParseURL(url)
		cleanupPrefix(b, redis.NewClient(opts), prefix)
		cfg := fxcache.DefaultConfig()
		cfg.URL, cfg.KeyPrefix = url, prefix
		miss(b, benchCache(b, cfg))
	})
}

// BenchmarkCachePaired alternates, in one loop, the repository's Get on
// PostgreSQL with a cached read (in-process hit, Redis hit, in-process
// miss, Redis miss): both see the same machine load, so the reported
// ratios (x-repository: repository time / cached time, above 1 is faster;
// miss-overhead: cached miss time / repository time) hold on a busy box.
func BenchmarkCachePaired(b *testing.B) {
	dsn := pgtest.NewDatabase(b)
	cfg := fxrepo.DefaultConfig()
	cfg.Driver, cfg.DSN = fxrepo.DriverPostgres, dsn
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{Registerer: prometheus.NewRegistry(), Models: []any{&benchOrder{}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Stop(context.Background()) })
	ctx := context.Background()
	repo := fxrepo.NewRepository[benchOrder, string](d.DB())
	if err := repo.Create(ctx, &benchOrder{ID: "o1", CustomerID: "alice", TotalCents: 2699, Status: "pending"}); err != nil {
		b.Fatal(err)
	}
	load := func(ctx context.Context) (benchOrder, error) {
		o, err := repo.Get(ctx, "o1")
		if err != nil {
			return benchOrder{}, err
		}
		return *o, nil
	}
	paired := func(b *testing.B, cached func(i int) error, miss bool) {
		var tRepo, tCache time.Duration
		i := 0
		for b.Loop() {
			i++
			s := time.Now()
			if _, err := repo.Get(ctx, "o1"); err != nil {
				b.Fatal(err)
			}
			m := time.Now()
			if err := cached(i); err != nil {
				b.Fatal(err)
			}
			tCache += time.Since(m)
			tRepo += m.Sub(s)
		}
		n := float64(b.N)
		b.ReportMetric(float64(tRepo.Nanoseconds())/n, "repo-ns/op")
		b.ReportMetric(float64(tCache.Nanoseconds())/n, "cached-ns/op")
		if miss {
			b.ReportMetric(float64(tCache)/float64(tRepo), "miss-overhead")
		} else {
			b.ReportMetric(float64(tRepo)/float64(tCache), "x-repository")
		}
	}
	redisCache := func(b *testing.B, localSize int) *fxcache.Cache {
		url := benchRedisURL(b)
		prefix := "bench-cache-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		opts, _ := redis.ParseURL(url)
		cleanupPrefix(b, redis.NewClient(opts), prefix)
		cfg := fxcache.DefaultConfig()
		cfg.URL, cfg.KeyPrefix, cfg.LocalSize = url, prefix, localSize
		return benchCache(b, cfg)
	}
	hit := func(c *fxcache.Cache) func(int) error {
		cached := fxcache.NewRepository[benchOrder, string](repo, c, "orders", fxcache.TypedOptions{})
		return func(int) error { _, err := cached.Get(ctx, "o1"); return err }
	}
	missFn := func(c *fxcache.Cache) func(int) error {
		view := fxcache.Of[benchOrder](c, "orders", fxcache.TypedOptions{})
		return func(i int) error { _, err := view.GetOrLoad(ctx, strconv.Itoa(i), load); return err }
	}
	b.Run("local-hit", func(b *testing.B) { paired(b, hit(benchCache(b, fxcache.DefaultConfig())), false) })
	b.Run("redis-hit", func(b *testing.B) { paired(b, hit(redisCache(b, 0)), false) })
	b.Run("local-miss", func(b *testing.B) { paired(b, missFn(benchCache(b, fxcache.DefaultConfig())), true) })
	b.Run("redis-miss", func(b *testing.B) { paired(b, missFn(redisCache(b, 100_000)), true) })
}
