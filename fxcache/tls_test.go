package fxcache_test

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/internal/nettest"
	"github.com/martyfx/martyfx/internal/pkitest"
)

// TestTLSAndPassword runs a private redis-server that only speaks mutual
// TLS and wants a password: the cache reaches it with MARTY_CACHE_TLS_*
// and MARTY_CACHE_PASSWORD; without TLS it falls through, never failing.
func TestTLSAndPassword(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH")
	}
	pki := pkitest.New(t)
	port := nettest.FreePort(t)
	cmd := exec.Command("redis-server", "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--tls-cert-file", pki.ServerCert, "--tls-key-file", pki.ServerKey, "--tls-ca-cert-file", pki.CA,
		"--tls-auth-clients", "yes", "--requirepass", "tls-pw", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })

	cfg := fxcache.DefaultConfig()
	cfg.URL = "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
	cfg.Password = "tls-pw"
	cfg.LocalSize = 0
	cfg.Timeout = time.Second
	cfg.TLS = fxcore.TLS{CAFile: pki.CA, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}
	c := newCache(t, cfg, fxcache.CacheOptions{Breakers: fastBreakers(t)})
	require.Eventually(t, func() bool { return c.Health(context.Background()) == nil }, 10*time.Second, 20*time.Millisecond,
		"the cache reaches Redis over mutual TLS with the password")
	orders := fxcache.Of[order](c, "orders", fxcache.TypedOptions{})
	orders.Set(context.Background(), "1", order{ID: 1, Status: "over tls"})
	v, ok := orders.Get(context.Background(), "1")
	require.True(t, ok, "read back from Redis (no in-process tier)")
	require.Equal(t, "over tls", v.Status)

	plain := cfg
	plain.TLS = fxcore.TLS{}
	p := newCache(t, plain, fxcache.CacheOptions{Breakers: fastBreakers(t)})
	require.Error(t, p.Health(context.Background()), "without TLS the server refuses")
	got, err := fxcache.Of[order](p, "orders", fxcache.TypedOptions{}).GetOrLoad(context.Background(), "1",
		func(context.Context) (order, error) { return order{Status: "db"}, nil })
	require.NoError(t, err)
	require.Equal(t, "db", got.Status, "and reads fall through to the loader")
}
