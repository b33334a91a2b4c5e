package fxtest_test

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/fxtest"
)

// An unset variable skips the test naming the variable, for every service.
func TestIntegrationSkipsWhenNotConfigured(t *testing.T) {
	if testing.Short() {
		f := newFake(t)
		require.False(t, f.run(func() { fxtest.Integration(f, fxtest.NeedNATS) }))
		require.Contains(t, f.skips[0], "-short")
		return
	}
	for s, env := range map[fxtest.Service]string{
		fxtest.NeedPostgres: "MARTY_TEST_POSTGRES_DSN",
		fxtest.NeedNATS:     "MARTY_TEST_NATS_URL",
		fxtest.NeedRedis:    "MARTY_TEST_REDIS_URL",
		fxtest.NeedRabbitMQ: "MARTY_TEST_RABBITMQ_URL",
	} {
		t.Setenv(env, "")
		f := newFake(t)
		require.False(t, f.run(func() { fxtest.Integration(f, s) }), s)
		require.Len(t, f.skips, 1, s)
		require.Contains(t, f.skips[0], "it needs "+string(s)+": set "+env, s)
	}
}

// A configured service that does not accept connections skips the test
// with its address and variable; a password in the URL is never shown.
func TestIntegrationSkipsWhenUnreachable(t *testing.T) {
	if testing.Short() {
		t.Skip("Integration always skips under -short")
	}
	// A port nothing listens on: one we bound and closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	for s, tc := range map[fxtest.Service]struct{ env, url string }{
		fxtest.NeedPostgres: {"MARTY_TEST_POSTGRES_DSN", "postgres://postgres:s3cret@" + addr + "/test"},
		fxtest.NeedNATS:     {"MARTY_TEST_NATS_URL", "nats://" + addr},
		fxtest.NeedRedis:    {"MARTY_TEST_REDIS_URL", "redis://:s3cret@" + addr + "/0"},
		fxtest.NeedRabbitMQ: {"MARTY_TEST_RABBITMQ_URL", "amqp://guest:s3cret@" + addr + "/"},
	} {
		t.Setenv(tc.env, tc.url)
		f := newFake(t)
		require.False(t, f.run(func() { fxtest.Integration(f, s) }), s)
		require.Len(t, f.skips, 1, s)
		require.Contains(t, f.skips[0], string(s)+" at "+addr+" is not reachable", s)
		require.Contains(t, f.skips[0], "set "+tc.env, s)
		require.NotContains(t, f.skips[0], "s3cret", s)
	}

	// A URL without a port gets the scheme's default port.
	t.Setenv("MARTY_TEST_REDIS_URL", "redis://127.0.0.1")
	f := newFake(t)
	if !f.run(func() { fxtest.Integration(f, fxtest.NeedRedis) }) {
		require.Contains(t, f.skips[0], "redis at 127.0.0.1:6379 is not reachable")
	}
}

func TestIntegrationRunsWhenReachable(t *testing.T) {
	if testing.Short() {
		t.Skip("Integration always skips under -short")
	}
	url := natsdev.RunForTest(t)
	t.Setenv("MARTY_TEST_NATS_URL", url)
	f := newFake(t)
	require.True(t, f.run(func() { fxtest.Integration(f, fxtest.NeedNATS) }), "skipped: %v", f.skips)

	f = newFake(t)
	require.False(t, f.run(func() { fxtest.Integration(f, "kafka") }))
	require.Contains(t, f.fatal(), `unknown service "kafka"`)
}

func TestPerformance(t *testing.T) {
	t.Setenv("MARTY_TEST_PERF", "")
	f := newFake(t)
	require.False(t, f.run(func() { fxtest.Performance(f) }))
	require.Equal(t, []string{"fxtest: performance test skipped: set MARTY_TEST_PERF=1 to run it"}, f.skips)

	t.Setenv("MARTY_TEST_PERF", "yes")
	f = newFake(t)
	require.False(t, f.run(func() { fxtest.Performance(f) }), "only 1 turns them on")

	t.Setenv("MARTY_TEST_PERF", "1")
	f = newFake(t)
	ran := f.run(func() { fxtest.Performance(f) })
	if testing.Short() {
		require.False(t, ran)
		require.Contains(t, f.skips[0], "-short")
		return
	}
	require.True(t, ran, "skipped: %v", f.skips)
}
