package fxcache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/nettest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's opener lives as long as a *sql.DB closed late.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// uniq is a random suffix for key prefixes, streams and names.
func uniq() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// sharedRedis returns the shared Redis' URL and a key prefix of the test's
// own, whose keys are deleted at cleanup; it skips without MARTY_TEST_REDIS_URL.
func sharedRedis(t *testing.T) (url, prefix string) {
	t.Helper()
	fxtest.Integration(t, fxtest.NeedRedis)
	url = os.Getenv("MARTY_TEST_REDIS_URL")
	prefix = "fxcache-test-" + uniq()
	t.Cleanup(func() { deleteKeys(t, url, prefix) })
	return url, prefix
}

// rawClient is a plain go-redis client the test inspects Redis with.
func rawClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	require.NoError(t, err)
	o.DisableIdentity = true
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func deleteKeys(t *testing.T, url, prefix string) {
	o, err := redis.ParseURL(url)
	require.NoError(t, err)
	o.DisableIdentity = true
	c := redis.NewClient(o)
	defer func() { _ = c.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+":*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	require.NoError(t, iter.Err())
	if len(keys) > 0 {
		require.NoError(t, c.Del(ctx, keys...).Err())
	}
}

// newCache builds a cache closed at cleanup.
func newCache(t *testing.T, cfg fxcache.Config, opts fxcache.CacheOptions) *fxcache.Cache {
	t.Helper()
	c, err := fxcache.NewCache(cfg, opts)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, c.Close(context.Background())) })
	return c
}

// fastBreakers open after 2 consecutive failures and half-open after 100ms.
func fastBreakers(t *testing.T) *breaker.Breakers {
	t.Helper()
	bs, err := breaker.New(breaker.Config{Defaults: breaker.Settings{ConsecutiveFailures: 2, Timeout: 100 * time.Millisecond}}, breaker.Options{})
	require.NoError(t, err)
	return bs
}

// privateRedis is a redis-server the test starts, kills and restarts.
type privateRedis struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *privateRedis) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(p.port) + "/0" }

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH: the outage test starts a private one")
	}
	p := &privateRedis{t: t, port: nettest.FreePort(t)}
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *privateRedis) start() {
	p.t.Helper()
	p.cmd = exec.Command("redis-server", "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", p.t.TempDir())
	require.NoError(p.t, p.cmd.Start())
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	c := rawClient(p.t, p.URL())
	require.Eventually(p.t, func() bool { return c.Ping(context.Background()).Err() == nil },
		10*time.Second, 20*time.Millisecond, "private redis-server on port %d did not answer", p.port)
}

// kill stops the private server at once (SIGKILL) and waits for its exit.
func (p *privateRedis) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd = nil
}
