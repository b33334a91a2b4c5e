package fxcache_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/metrictest"
)

func redisConfig(url, prefix string) fxcache.Config {
	cfg := fxcache.DefaultConfig()
	cfg.URL = url
	cfg.KeyPrefix = prefix
	cfg.Timeout = 200 * time.Millisecond
	return cfg
}

func TestRedisTierIsSharedBetweenReplicas(t *testing.T) {
	t.Parallel()
	url, prefix := sharedRedis(t)
	rdb := rawClient(t, url)
	reg := prometheus.NewRegistry()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	a := newCache(t, redisConfig(url, prefix), fxcache.CacheOptions{Registerer: reg, TracerProvider: tp})
	b := newCache(t, redisConfig(url, prefix), fxcache.CacheOptions{})
	require.True(t, a.Redis())
	ctx := context.Background()
	la, lb := &counting{}, &counting{}
	_, err := fxcache.Of[order](a, "orders", fxcache.TypedOptions{}).GetOrLoad(ctx, "1", la.load("1"))
	require.NoError(t, err)
	key := prefix + ":orders:1"
	require.Eventually(t, func() bool { return rdb.Exists(ctx, key).Val() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the loaded value is written to Redis")
	ttl := rdb.TTL(ctx, key).Val()
	require.Greater(t, ttl, 4*time.Minute, "TTL 5m with 10%% jitter")
	require.LessOrEqual(t, ttl, 5*time.Minute+30*time.Second)

	bo := fxcache.Of[order](b, "orders", fxcache.TypedOptions{})
	v, err := bo.GetOrLoad(ctx, "1", lb.load("1"))
	require.NoError(t, err)
	require.Equal(t, "loaded:1", v.Status)
	require.Zero(t, lb.calls.Load(), "the other replica reads Redis instead of loading")

	// Without the in-process tier every read goes to Redis.
	regOnly := prometheus.NewRegistry()
	onlyCfg := redisConfig(url, prefix)
	onlyCfg.LocalSize = 0
	only := fxcache.Of[order](newCache(t, onlyCfg, fxcache.CacheOptions{Registerer: regOnly}), "orders", fxcache.TypedOptions{})
	for range 2 {
		v, ok := only.Get(ctx, "1")
		require.True(t, ok)
		require.Equal(t, "loaded:1", v.Status)
	}
	require.Equal(t, 2.0, metrictest.Value(t, regOnly, "marty_cache_hits_total", map[string]string{"cache": "orders", "tier": "redis"}))

	// Delete clears Redis too.
	fxcache.Of[order](a, "orders", fxcache.TypedOptions{}).Delete(ctx, "1")
	require.Zero(t, rdb.Exists(ctx, key).Val())

	// A remembered not-found is shared too.
	nf := &counting{fn: func(context.Context, string) (order, error) { return order{}, fxrepo.ErrNotFound }}
	_, err = fxcache.Of[order](a, "orders", fxcache.TypedOptions{}).GetOrLoad(ctx, "404", nf.load("404"))
	require.ErrorIs(t, err, fxrepo.ErrNotFound)
	require.Eventually(t, func() bool { return rdb.Exists(ctx, prefix+":orders:404").Val() == 1 }, 5*time.Second, 5*time.Millisecond)
	_, err = bo.GetOrLoad(ctx, "404", nf.load("404"))
	require.ErrorIs(t, err, fxcache.ErrNotFound)
	require.EqualValues(t, 1, nf.calls.Load())

	require.Positive(t, metrictest.Value(t, reg, "marty_cache_redis_duration_seconds", map[string]string{"op": "get"}))
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
	}
	require.Contains(t, names, "get", "go-redis' OTel instrumentation traces the calls")
}

func TestRedisKeysExpire(t *testing.T) {
	t.Parallel()
	url, prefix := sharedRedis(t)
	rdb := rawClient(t, url)
	cfg := redisConfig(url, prefix)
	cfg.TTL = 300 * time.Millisecond
	c := newCache(t, cfg, fxcache.CacheOptions{})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	ctx := context.Background()
	orders.Set(ctx, "1", order{ID: 1})
	key := prefix + ":orders:1"
	require.Equal(t, int64(1), rdb.Exists(ctx, key).Val())
	require.Positive(t, rdb.PTTL(ctx, key).Val(), "the key has a TTL")
	require.Eventually(t, func() bool { return rdb.Exists(ctx, key).Val() == 0 }, 10*time.Second, 20*time.Millisecond,
		"Redis expires the key")
	require.Eventually(t, func() bool { _, ok := orders.Get(ctx, "1"); return !ok }, 10*time.Second, 20*time.Millisecond,
		"and the in-process tier too")
}

func TestRedisHundredMissesOneLoad(t *testing.T) {
	t.Parallel()
	url, prefix := sharedRedis(t)
	c := newCache(t, redisConfig(url, prefix), fxcache.CacheOptions{})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	release := make(chan struct{})
	l := &counting{fn: func(context.Context, string) (order, error) { <-release; return order{Status: "hot"}, nil }}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 100 {
		wg.Go(func() {
			if _, err := orders.GetOrLoad(context.Background(), "hot", l.load("hot")); err != nil {
				failed.Add(1)
			}
		})
	}
	require.Eventually(t, func() bool { return l.calls.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	require.Zero(t, failed.Load())
	require.EqualValues(t, 1, l.calls.Load(), "100 concurrent misses make one load")
}

// TestRedisKilledUnderLoad kills a private redis-server while readers run:
// no read fails, the breaker opens, health and metrics show the outage,
// and the cache uses Redis again once it is back.
func TestRedisKilledUnderLoad(t *testing.T) {
	t.Parallel()
	srv := startPrivateRedis(t)
	reg := prometheus.NewRegistry()
	bs := fastBreakers(t)
	cfg := redisConfig(srv.URL(), "outage")
	cfg.LocalTTL = 20 * time.Millisecond // reads keep reaching Redis
	c := newCache(t, cfg, fxcache.CacheOptions{Registerer: reg, Breakers: bs})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	ctx := context.Background()
	require.NoError(t, c.Health(ctx))
	require.Equal(t, 1.0, metrictest.Value(t, reg, "marty_cache_redis_up", nil))

	var loads, reads, failed atomic.Int64
	loader := func(ctx context.Context) (order, error) { loads.Add(1); return order{Status: "db"}, nil }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := string(rune('a' + (w*7+i)%20))
				if v, err := orders.GetOrLoad(ctx, key, loader); err != nil || v.Status != "db" {
					failed.Add(1)
				}
				reads.Add(1)
			}
		})
	}
	waitReads := func(n int64) {
		start := reads.Load()
		require.Eventually(t, func() bool { return reads.Load() >= start+n }, 20*time.Second, time.Millisecond)
	}
	waitReads(200)
	srv.kill()
	require.Eventually(t, func() bool { return bs.Get(fxcache.BreakerName).State() != breaker.Closed }, 10*time.Second, time.Millisecond,
		"the breaker opens")
	waitReads(500)
	require.ErrorContains(t, c.Health(ctx), "fxcache: redis unreachable")
	require.NotContains(t, c.Health(ctx).Error(), "127.0.0.1", "the check's error names no host")
	require.Equal(t, 0.0, metrictest.Value(t, reg, "marty_cache_redis_up", nil))
	require.Positive(t, metrictest.Value(t, reg, "marty_cache_redis_errors_total", map[string]string{"op": "get"}))

	// A delete while Redis is down is re-sent once it is back.
	orders.Delete(ctx, "a")
	require.Positive(t, c.PendingDeletes())

	srv.start()
	require.Eventually(t, func() bool { return c.Health(ctx) == nil }, 20*time.Second, 50*time.Millisecond, "health recovers")
	require.Zero(t, c.PendingDeletes())
	require.Eventually(t, func() bool { return bs.Get(fxcache.BreakerName).State() == breaker.Closed }, 20*time.Second, 5*time.Millisecond,
		"the breaker closes again")
	hitsBefore := metrictest.Value(t, reg, "marty_cache_hits_total", map[string]string{"cache": "orders", "tier": "redis"})
	require.Eventually(t, func() bool {
		return metrictest.Value(t, reg, "marty_cache_hits_total", map[string]string{"cache": "orders", "tier": "redis"}) > hitsBefore
	}, 20*time.Second, 10*time.Millisecond, "reads use Redis again")
	close(stop)
	wg.Wait()
	require.Zero(t, failed.Load(), "no read failed while Redis was down")
	require.Positive(t, loads.Load())
}

// TestSlowRedisFallsThrough puts a server that accepts connections and
// never answers in Redis' place: reads fall through within the timeout.
func TestSlowRedisFallsThrough(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	bs := fastBreakers(t)
	cfg := redisConfig("redis://"+l.Addr().String(), "slow")
	cfg.Timeout = 50 * time.Millisecond
	c := newCache(t, cfg, fxcache.CacheOptions{Breakers: bs})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	for i := range 20 {
		v, err := orders.GetOrLoad(context.Background(), string(rune('a'+i)), func(context.Context) (order, error) {
			return order{Status: "db"}, nil
		})
		require.NoError(t, err)
		require.Equal(t, "db", v.Status)
	}
	require.Equal(t, breaker.Open, bs.Get(fxcache.BreakerName).State(), "timeouts open the breaker")
	require.Error(t, c.Health(context.Background()))

	boom := errors.New("db error")
	_, err = orders.GetOrLoad(context.Background(), "z", func(context.Context) (order, error) { return order{}, boom })
	require.ErrorIs(t, err, boom, "the loader's own errors are still returned")
}
