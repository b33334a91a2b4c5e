package fxcache_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/metrictest"
)

type order struct {
	ID     int64  `json:"id"`
	Status string `json:"status"`
}

// counting is a loader that counts its calls.
type counting struct {
	calls atomic.Int64
	fn    func(ctx context.Context, key string) (order, error)
}

func (c *counting) load(key string) func(ctx context.Context) (order, error) {
	return func(ctx context.Context) (order, error) {
		c.calls.Add(1)
		if c.fn != nil {
			return c.fn(ctx, key)
		}
		return order{ID: 1, Status: "loaded:" + key}, nil
	}
}

func TestInProcessGetOrLoad(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := newCache(t, fxcache.DefaultConfig(), fxcache.CacheOptions{Registerer: reg})
	require.False(t, c.Redis())
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	ctx := context.Background()
	l := &counting{}
	for range 3 {
		v, err := orders.GetOrLoad(ctx, "1", l.load("1"))
		require.NoError(t, err)
		require.Equal(t, "loaded:1", v.Status)
	}
	require.EqualValues(t, 1, l.calls.Load(), "the second and third reads are hits")
	require.Equal(t, 2.0, metrictest.Value(t, reg, "marty_cache_hits_total", map[string]string{"cache": "orders", "tier": "local"}))
	require.Equal(t, 1.0, metrictest.Value(t, reg, "marty_cache_misses_total", map[string]string{"cache": "orders"}))
	require.Equal(t, 1.0, metrictest.Value(t, reg, "marty_cache_loads_total", map[string]string{"cache": "orders", "result": "ok"}))

	v, ok := orders.Get(ctx, "1")
	require.True(t, ok)
	require.Equal(t, "loaded:1", v.Status)
	_, ok = orders.Get(ctx, "2")
	require.False(t, ok)

	orders.Set(ctx, "2", order{ID: 2, Status: "set"})
	v, err := orders.GetOrLoad(ctx, "2", l.load("2"))
	require.NoError(t, err)
	require.Equal(t, "set", v.Status)

	orders.Delete(ctx, "1")
	_, ok = orders.Get(ctx, "1")
	require.False(t, ok, "deleted")
	_, err = orders.GetOrLoad(ctx, "1", l.load("1"))
	require.NoError(t, err)
	require.EqualValues(t, 2, l.calls.Load(), "a deleted key is loaded again")

	other := fxcache.Of[order](c, "archive", fxcache.TypedOptions{})
	_, ok = other.Get(ctx, "2")
	require.False(t, ok, "views are separate namespaces")
}

func TestSingleflightHundredMissesOneLoad(t *testing.T) {
	t.Parallel()
	c := newCache(t, fxcache.DefaultConfig(), fxcache.CacheOptions{})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	release := make(chan struct{})
	var started atomic.Int64
	l := &counting{fn: func(ctx context.Context, key string) (order, error) {
		started.Add(1)
		<-release
		return order{ID: 7, Status: "hot"}, nil
	}}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			v, err := orders.GetOrLoad(context.Background(), "hot", l.load("hot"))
			if err == nil && v.Status != "hot" {
				err = errors.New("wrong value " + v.Status)
			}
			errs <- err
		})
	}
	require.Eventually(t, func() bool { return started.Load() == 1 }, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 1, l.calls.Load(), "100 concurrent misses on one key make one load")
}

func TestNegativeCacheRemembersNotFoundAndIsBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	cfg := fxcache.DefaultConfig()
	cfg.NegativeSize = 10
	c := newCache(t, cfg, fxcache.CacheOptions{Registerer: reg})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	ctx := context.Background()
	notFound := &counting{fn: func(ctx context.Context, key string) (order, error) {
		return order{}, &fxrepo.Error{Op: "get", Entity: "order", ID: key, Kind: fxrepo.ErrNotFound}
	}}
	_, err := orders.GetOrLoad(ctx, "missing", notFound.load("missing"))
	require.ErrorIs(t, err, fxrepo.ErrNotFound, "the first load returns the loader's error")
	_, err = orders.GetOrLoad(ctx, "missing", notFound.load("missing"))
	require.ErrorIs(t, err, fxcache.ErrNotFound)
	require.ErrorIs(t, err, fxrepo.ErrNotFound, "a remembered not-found is still a not-found for fxrepo callers")
	require.Equal(t, fxcore.ClassNotFound, fxcore.Classify(err).Class)
	require.EqualValues(t, 1, notFound.calls.Load(), "remembered")
	require.Equal(t, 1.0, metrictest.Value(t, reg, "marty_cache_negative_hits_total", map[string]string{"cache": "orders", "tier": "local"}))

	// A flood of unknown keys stays within NegativeSize and evicts no value.
	good := &counting{}
	_, err = orders.GetOrLoad(ctx, "good", good.load("good"))
	require.NoError(t, err)
	for i := range 200 {
		_, _ = orders.GetOrLoad(ctx, "unknown-"+string(rune('a'+i%26))+string(rune('a'+i/26)), notFound.load(""))
	}
	require.Eventually(t, func() bool {
		return metrictest.Value(t, reg, "marty_cache_evictions_total", map[string]string{"tier": "negative", "cause": "size"}) > 0
	}, 5*time.Second, 10*time.Millisecond, "the negative cache evicts past its bound")
	_, err = orders.GetOrLoad(ctx, "good", good.load("good"))
	require.NoError(t, err)
	require.EqualValues(t, 1, good.calls.Load(), "values are not evicted by not-founds")

	// Negative caching off: every miss loads.
	cfg.NegativeTTL = 0
	off := fxcache.Of[order](newCache(t, cfg, fxcache.CacheOptions{}), "orders", fxcache.TypedOptions{})
	n := &counting{fn: notFound.fn}
	for range 2 {
		_, err = off.GetOrLoad(ctx, "missing", n.load("missing"))
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
	}
	require.EqualValues(t, 2, n.calls.Load())
}

func TestLoadErrorsAreNotCached(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := newCache(t, fxcache.DefaultConfig(), fxcache.CacheOptions{Registerer: reg})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	boom := errors.New("database down")
	l := &counting{fn: func(context.Context, string) (order, error) { return order{}, boom }}
	for range 2 {
		_, err := orders.GetOrLoad(context.Background(), "1", l.load("1"))
		require.ErrorIs(t, err, boom)
	}
	require.EqualValues(t, 2, l.calls.Load(), "a failed load is retried by the next read")
	require.Equal(t, 2.0, metrictest.Value(t, reg, "marty_cache_load_errors_total", map[string]string{"cache": "orders"}))

	panicky := &counting{fn: func(context.Context, string) (order, error) { panic("bug") }}
	_, err := orders.GetOrLoad(context.Background(), "2", panicky.load("2"))
	require.ErrorContains(t, err, "fxcache: loader panicked: bug")
}

func TestCallerCancellationDoesNotCancelSharedLoad(t *testing.T) {
	t.Parallel()
	c := newCache(t, fxcache.DefaultConfig(), fxcache.CacheOptions{})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	release := make(chan struct{})
	inLoad := make(chan struct{})
	l := &counting{fn: func(ctx context.Context, _ string) (order, error) {
		close(inLoad)
		<-release
		return order{Status: "ok"}, ctx.Err()
	}}
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := orders.GetOrLoad(ctx, "k", l.load("k")); first <- err }()
	<-inLoad
	second := make(chan error, 1)
	go func() { _, err := orders.GetOrLoad(context.Background(), "k", l.load("k")); second <- err }()
	cancel()
	require.ErrorIs(t, <-first, context.Canceled, "the cancelled caller stops waiting")
	close(release)
	require.NoError(t, <-second, "the load it started still serves the other caller")
	v, ok := orders.Get(context.Background(), "k")
	require.True(t, ok)
	require.Equal(t, "ok", v.Status)
}

func TestTTLExpiresInProcess(t *testing.T) {
	t.Parallel()
	cfg := fxcache.DefaultConfig()
	cfg.TTL = 50 * time.Millisecond
	c := newCache(t, cfg, fxcache.CacheOptions{})
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	l := &counting{}
	_, err := orders.GetOrLoad(context.Background(), "1", l.load("1"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, ok := orders.Get(context.Background(), "1")
		return !ok
	}, 5*time.Second, 10*time.Millisecond, "the entry expires after its TTL")

	long := fxcache.Of[order](c, "long", fxcache.TypedOptions{TTL: time.Hour})
	long.Set(context.Background(), "1", order{ID: 1})
	_, ok := long.Get(context.Background(), "1")
	require.True(t, ok, "TypedOptions.TTL overrides the config's")
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		mutate func(*fxcache.Config)
		key    string
	}{
		{func(c *fxcache.Config) { c.URL = "http://x" }, "url"},
		{func(c *fxcache.Config) { c.URL = "redis://user:secret@" }, "url"},
		{func(c *fxcache.Config) { c.TTL = 0 }, "ttl"},
		{func(c *fxcache.Config) { c.Jitter = 0.9 }, "jitter"},
		{func(c *fxcache.Config) { c.NegativeTTL = -1 }, "negative_ttl"},
		{func(c *fxcache.Config) { c.LocalSize = 0 }, "local_size"},
		{func(c *fxcache.Config) { c.NegativeSize = 0 }, "negative_size"},
		{func(c *fxcache.Config) { c.Timeout = 0 }, "timeout"},
		{func(c *fxcache.Config) { c.KeyPrefix = "a b" }, "key_prefix"},
		{func(c *fxcache.Config) { c.TLS.CertFile = "x.pem" }, "tls.key_file"},
	} {
		cfg := fxcache.DefaultConfig()
		tc.mutate(&cfg)
		_, err := fxcache.NewCache(cfg, fxcache.CacheOptions{})
		var fe *fxcore.FieldError
		require.ErrorAs(t, err, &fe, tc.key)
		require.Equal(t, tc.key, fe.Key)
		require.NotContains(t, err.Error(), "secret", "a password never reaches an error")
	}
}

func TestSecondCacheOnRegistryFails(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	newCache(t, fxcache.DefaultConfig(), fxcache.CacheOptions{Registerer: reg})
	_, err := fxcache.NewCache(fxcache.DefaultConfig(), fxcache.CacheOptions{Registerer: reg})
	require.ErrorContains(t, err, "fxcache: register the marty_cache_* metrics")
}
