package fxtest

import (
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/martyfx/martyfx/internal/pgtest"
)

// Service is an external service an integration test needs.
type Service string

// The services Integration knows how to find, each from its variable.
const (
	// NeedPostgres needs a PostgreSQL server the test may create databases
	// on at MARTY_TEST_POSTGRES_DSN (see Postgres).
	NeedPostgres Service = "postgres"
	// NeedNATS needs a NATS server with JetStream at MARTY_TEST_NATS_URL.
	// Tests that can use an embedded server should call NATS instead and
	// need nothing.
	NeedNATS Service = "nats"
	// NeedRedis needs a Redis server at MARTY_TEST_REDIS_URL.
	NeedRedis Service = "redis"
	// NeedRabbitMQ needs a RabbitMQ server at MARTY_TEST_RABBITMQ_URL.
	NeedRabbitMQ Service = "rabbitmq"
)

// The variables that point integration tests at their services.
const (
	EnvPostgresDSN = pgtest.EnvDSN // MARTY_TEST_POSTGRES_DSN
	EnvNATSURL     = "MARTY_TEST_NATS_URL"
	EnvRedisURL    = "MARTY_TEST_REDIS_URL"
	EnvRabbitMQURL = "MARTY_TEST_RABBITMQ_URL"
	// EnvPerf set to 1 runs the performance tests (Performance).
	EnvPerf = "MARTY_TEST_PERF"
)

// serviceEnv is how Integration finds each service: its variable, an
// example value for the skip message, and the default port by URL scheme.
var serviceEnv = map[Service]struct {
	env, example string
	ports        map[string]string
}{
	NeedPostgres: {EnvPostgresDSN, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", map[string]string{"postgres": "5432", "postgresql": "5432"}},
	NeedNATS:     {EnvNATSURL, "nats://127.0.0.1:4222", map[string]string{"nats": "4222", "tls": "4222"}},
	NeedRedis:    {EnvRedisURL, "redis://127.0.0.1:6379", map[string]string{"redis": "6379", "rediss": "6379"}},
	NeedRabbitMQ: {EnvRabbitMQURL, "amqp://guest:guest@127.0.0.1:5672/", map[string]string{"amqp": "5672", "amqps": "5671"}},
}

// Integration marks t as an integration test: it skips it under
// `go test -short`, and when a service it needs is not configured (its
// variable is unset) or does not accept TCP connections, naming the
// variable to set. An unknown service fails the test.
//
//	fxtest.Integration(t, fxtest.NeedPostgres, fxtest.NeedNATS)
func Integration(t testing.TB, needs ...Service) {
	t.Helper()
	if testing.Short() {
		t.Skip("fxtest: integration test skipped in -short mode")
		return
	}
	for _, s := range needs {
		se, ok := serviceEnv[s]
		if !ok {
			t.Fatalf("fxtest: Integration: unknown service %q (want NeedPostgres, NeedNATS, NeedRedis or NeedRabbitMQ)", s)
			return
		}
		raw := os.Getenv(se.env)
		if raw == "" {
			t.Skipf("fxtest: integration test skipped: it needs %s: set %s (e.g. %s)", s, se.env, se.example)
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			if s == NeedPostgres {
				continue // a key=value DSN: the test's connect will tell
			}
			t.Skipf("fxtest: integration test skipped: %s is not a URL like %s", se.env, se.example)
			return
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), se.ports[u.Scheme])
		}
		c, err := net.DialTimeout("tcp", host, 2*time.Second)
		if err != nil {
			t.Skipf("fxtest: integration test skipped: %s at %s is not reachable (%v): set %s", s, host, err, se.env)
			return
		}
		_ = c.Close()
	}
}

// Performance marks t as a performance test: it runs only when
// MARTY_TEST_PERF=1 (and not under -short), and is skipped otherwise with a
// message saying so. Name performance tests TestPerf... so that
// `go test -run Perf` selects them, and do not run them in parallel with
// other tests: CPU and allocations are measured for the whole process.
// CI runs them in a step of their own with MARTY_TEST_PERF_REPORT_ONLY=1
// (see fxtest/load): it reports speed and fails only on errors and crashes.
func Performance(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvPerf) != "1" {
		t.Skipf("fxtest: performance test skipped: set %s=1 to run it", EnvPerf)
		return
	}
	if testing.Short() {
		t.Skip("fxtest: performance test skipped in -short mode")
	}
}
