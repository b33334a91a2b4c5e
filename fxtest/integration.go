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

// The services Integration knows how to find.
const (
	// NeedPostgres needs MARTY_TEST_POSTGRES_DSN (a server the test may
	// create databases on; see Postgres).
	NeedPostgres Service = "postgres"
	// NeedNATS needs a NATS server with JetStream at MARTY_TEST_NATS_URL
	// (default nats://127.0.0.1:4222). Tests that can use an embedded server
	// should call NATS instead and need nothing.
	NeedNATS Service = "nats"
)

// EnvNATSURL names the variable that points integration tests at NATS.
const EnvNATSURL = "MARTY_TEST_NATS_URL"

// Integration marks t as an integration test: it skips it under
// `go test -short`, and when a service it needs is not configured or does
// not accept TCP connections, saying what to set.
func Integration(t testing.TB, needs ...Service) {
	t.Helper()
	if testing.Short() {
		t.Skip("fxtest: integration test skipped in -short mode")
		return
	}
	for _, s := range needs {
		switch s {
		case NeedPostgres:
			dsn := pgtest.DSN(t)
			if u, err := url.Parse(dsn); err == nil && u.Host != "" {
				host := u.Host
				if u.Port() == "" {
					host = net.JoinHostPort(u.Hostname(), "5432")
				}
				skipUnreachable(t, s, host, pgtest.EnvDSN)
			}
		case NeedNATS:
			raw := os.Getenv(EnvNATSURL)
			if raw == "" {
				raw = "nats://127.0.0.1:4222"
			}
			u, err := url.Parse(raw)
			if err != nil || u.Host == "" {
				t.Skipf("fxtest: %s=%q is not a nats:// URL: skipping the integration test", EnvNATSURL, raw)
				return
			}
			skipUnreachable(t, s, u.Host, EnvNATSURL)
		default:
			t.Fatalf("fxtest: Integration: unknown service %q (want NeedPostgres or NeedNATS)", s)
		}
	}
}

func skipUnreachable(t testing.TB, s Service, host, env string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		t.Skipf("fxtest: %s at %s is not reachable (%v): skipping the integration test (set %s)", s, host, err, env)
		return
	}
	_ = c.Close()
}
