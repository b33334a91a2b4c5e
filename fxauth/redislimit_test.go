package fxauth_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxtest"
)

// redisReplicas returns n Auths (replicas) limiting by IP through the
// test Redis under a key prefix of their own, removed at cleanup.
func redisReplicas(t *testing.T, n int, rps float64, burst int) []*fxauth.Auth {
	t.Helper()
	fxtest.Integration(t, fxtest.NeedRedis)
	url := os.Getenv("MARTY_TEST_REDIS_URL")
	prefix := fmt.Sprintf("marty:test:fxauth:%d:", rand.Uint64())
	opts, err := redis.ParseURL(url)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, "*"+prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			_ = rdb.Del(ctx, iter.Val()).Err()
		}
		_ = rdb.Close()
	})
	var out []*fxauth.Auth
	for range n {
		cfg := fxauth.DefaultConfig()
		cfg.RateLimit, cfg.RateBurst, cfg.RateKey = rps, burst, fxauth.RateKeyIP
		cfg.RateRedisURL, cfg.RateRedisPrefix, cfg.RateRedisTimeout = url, prefix, 2*time.Second
		a, err := fxauth.NewAuth(cfg, fxauth.Options{Registerer: prometheus.NewRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = a.Close() })
		out = append(out, a)
	}
	return out
}

// TestRedisSharedBucket: two replicas share one bucket per caller: the
// burst is spent across them, not once on each.
func TestRedisSharedBucket(t *testing.T) {
	t.Parallel()
	rs := redisReplicas(t, 2, 0.001, 5)
	allowed := 0
	for i := range 20 {
		if fxauth.AllowForTest(rs[i%2], "203.0.113.1") {
			allowed++
		}
	}
	require.Equal(t, 5, allowed)
	require.True(t, fxauth.AllowForTest(rs[1], "203.0.113.2"), "another caller has its own bucket")
}

// TestRedisGlobalRate: two replicas with four callers each, all as one
// client, share the global 100 req/s: what they admit over the run is at
// most 100 per second of it plus the burst (each on its own limit, about
// twice as much), and at least the burst.
func TestRedisGlobalRate(t *testing.T) {
	t.Parallel()
	rs := redisReplicas(t, 2, 100, 100)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	start := time.Now()
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if fxauth.AllowForTest(rs[i%2], "198.51.100.9") {
					allowed.Add(1)
				}
			}
		})
	}
	timer := time.NewTimer(3 * time.Second)
	<-timer.C
	close(stop)
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	// Causal bounds only (no speed assumed): the shared bucket never
	// admits more than one burst plus the rate over the elapsed time (two
	// unshared buckets would admit about twice that), and always admits at
	// least the burst.
	most := 100*elapsed + 100
	got := float64(allowed.Load())
	require.LessOrEqual(t, got, most*1.05, "admitted %v in %.2fs: the replicas do not share one bucket", got, elapsed)
	require.GreaterOrEqual(t, got, 100.0, "the burst is admitted")
}

// TestRedisDownFallsBack: with Redis unreachable the replica limits in
// process (it does not refuse everything) and reports it.
func TestRedisDownFallsBack(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close()) // nothing listens there now

	cfg := fxauth.DefaultConfig()
	cfg.RateLimit, cfg.RateBurst, cfg.RateKey = 0.001, 3, fxauth.RateKeyIP
	cfg.RateRedisURL = "redis://:hunter2@" + addr + "/0"
	reg := prometheus.NewRegistry()
	a, err := fxauth.NewAuth(cfg, fxauth.Options{Registerer: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	allowed := 0
	for range 6 {
		if fxauth.AllowForTest(a, "203.0.113.5") {
			allowed++
		}
	}
	require.Equal(t, 3, allowed, "the local bucket decides")
	require.InDelta(t, 6, value(t, reg, "marty_auth_ratelimit_fallbacks_total"), 0)
	require.InDelta(t, 1, value(t, reg, "marty_auth_ratelimit_redis_down"), 0)
}
