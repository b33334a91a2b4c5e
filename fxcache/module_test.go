package fxcache_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxtest"
)

func modules() fx.Option {
	return fxtest.WithModules(append(append([]fx.Option{}, martyfx.Modules...), fxcache.Module)...)
}

type verbose struct {
	Status string `json:"status"`
	Checks []struct {
		Name     string `json:"name"`
		Critical bool   `json:"critical"`
		Status   string `json:"status"`
		Error    string `json:"error"`
	} `json:"checks"`
}

func (v verbose) check(name string) (critical bool, status, errText string) {
	for _, c := range v.Checks {
		if c.Name == name {
			return c.Critical, c.Status, c.Error
		}
	}
	return false, "absent", ""
}

func TestModuleIsInProcessWithoutRedis(t *testing.T) {
	t.Parallel()
	var c *fxcache.Cache
	app := fxtest.New(t, modules(), fx.Populate(&c))
	require.False(t, c.Redis(), "no MARTY_CACHE_URL: in-process only")
	require.Equal(t, "fxtest", c.KeyPrefix(), "the key prefix defaults to the service name")
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	_, err := orders.GetOrLoad(context.Background(), "1", (&counting{}).load("1"))
	require.NoError(t, err)
	var v verbose
	require.Equal(t, 200, app.Admin().Get("/readyz?verbose", &v))
	_, status, _ := v.check("cache")
	require.Equal(t, "passing", status)
	var metrics string
	app.Admin().Get("/metrics", &metrics)
	require.Contains(t, metrics, `marty_cache_hits_total`)
	require.Contains(t, metrics, `marty_cache_local_entries 1`)
	require.NotContains(t, metrics, "marty_cache_redis_up", "no Redis metrics without Redis")
	var state string
	app.Admin().Get("/dashboard/api/state", &state)
	require.Contains(t, state, `"cache"`, "the dashboard has the cache panel")
}

// TestModuleRedisDownNeverFailsStartOrReadiness starts the app while its
// Redis is down: the start succeeds, reads load, readiness stays 200 with
// the cache check failing as non-critical (degraded); once a redis-server
// listens on the port the check passes.
func TestModuleRedisDownNeverFailsStartOrReadiness(t *testing.T) {
	t.Parallel()
	srv := startPrivateRedis(t)
	srv.kill()
	var c *fxcache.Cache
	app := fxtest.New(t, modules(), fx.Populate(&c),
		fxtest.Env("MARTY_CACHE_URL="+srv.URL(), "MARTY_CACHE_PASSWORD=s3cr3t-pw", "MARTY_CACHE_TIMEOUT=50ms",
			"MARTY_MONITOR_BREAKERS_CACHE_REDIS_TIMEOUT=100ms"))
	require.True(t, c.Redis())
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	for i := range 10 {
		v, err := orders.GetOrLoad(context.Background(), strconv.Itoa(i), (&counting{}).load("x"))
		require.NoError(t, err, "Redis down never fails a read")
		require.Equal(t, "loaded:x", v.Status)
	}
	require.Eventually(t, func() bool {
		var v verbose
		code := app.Admin().Get("/readyz?verbose", &v)
		critical, status, errText := v.check("cache")
		return code == 200 && !critical && status == "failing" && strings.Contains(errText, "redis unreachable") &&
			!strings.Contains(errText, "127.0.0.1")
	}, 20*time.Second, 20*time.Millisecond, "readiness 200, the cache check failing as non-critical")
	var metrics string
	app.Admin().Get("/metrics", &metrics)
	require.Contains(t, metrics, "marty_cache_redis_up 0")
	require.Contains(t, metrics, `marty_circuit_breaker_state{name="cache-redis"}`)

	srv.start()
	require.Eventually(t, func() bool {
		var v verbose
		app.Admin().Get("/readyz?verbose", &v)
		_, status, _ := v.check("cache")
		return status == "passing"
	}, 20*time.Second, 50*time.Millisecond, "the check passes once Redis is back")
	for _, e := range app.Logs().All() {
		require.NotContains(t, e.Message, "s3cr3t-pw")
		for _, v := range e.ContextMap() {
			s, _ := v.(string)
			require.NotContains(t, s, "s3cr3t-pw", "the password never reaches a log")
		}
	}
}

func TestModuleConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{
		"MARTY_CACHE_TTL=soon":                       "MARTY_CACHE_TTL",
		"MARTY_CACHE_URL=memcached://x:1":            "MARTY_CACHE_URL",
		"MARTY_CACHE_JITTER=2":                       "MARTY_CACHE_JITTER",
		"MARTY_CACHE_TLS_CERT_FILE=/nonexistent.pem": "MARTY_CACHE_TLS_KEY_FILE",
	} {
		src, err := fxcore.NewSourceFrom("", []string{env})
		require.NoError(t, err)
		app := fx.New(fx.NopLogger, fxcore.Module, fx.Replace(src),
			fx.Provide(fxcore.ProvideConfig[fxcache.Config]("cache", fxcache.DefaultConfig)),
			fx.Invoke(func(fxcache.Config) {}))
		require.ErrorContains(t, app.Err(), want, env)
	}
}
