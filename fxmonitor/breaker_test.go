package fxmonitor_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/stretchr/testify/require"
)

// The module configures breakers from MARTY_MONITOR_BREAKER(S)_*, exports
// them at /metrics and degrades readiness while one is open. (The breaker
// package's tests cover half-open and closing again.)
func TestBreakerConfigMetricsAndReadiness(t *testing.T) {
	t.Parallel()
	h := start(t, []string{
		"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false", "MARTY_MONITOR_CHECK_TTL=1ns",
		"MARTY_MONITOR_BREAKERS_PAYMENTS_TIMEOUT=1h", "MARTY_MONITOR_BREAKERS_PAYMENTS_CONSECUTIVE_FAILURES=3",
		"MARTY_MONITOR_BREAKER_TIMEOUT=45s",
	})
	br := h.breakers.Get("payments")
	require.Same(t, br, h.breakers.Get("payments"))
	require.Equal(t, time.Hour, br.Settings().Timeout, "per-name setting")
	require.EqualValues(t, 3, br.Settings().ConsecutiveFailures)
	require.EqualValues(t, 1, br.Settings().MaxRequests, "default")
	other := h.breakers.Get("search")
	require.Equal(t, 45*time.Second, other.Settings().Timeout, "MARTY_MONITOR_BREAKER_* sets every breaker's default")
	require.EqualValues(t, 5, other.Settings().ConsecutiveFailures)

	boom := errors.New("payments: 502")
	for range 3 {
		require.ErrorIs(t, br.Execute(func() error { return boom }), boom, "the call's own error")
	}
	require.Equal(t, breaker.Open, br.State())
	called := false
	err := br.Execute(func() error { called = true; return nil })
	require.False(t, called, "an open breaker does not call")
	require.ErrorIs(t, err, breaker.ErrOpen)
	require.EqualError(t, err, `fxmonitor: circuit breaker "payments" is open`)

	mfs := h.scrape()
	v, _ := value(mfs, "marty_circuit_breaker_state", map[string]string{"name": "payments"})
	require.Equal(t, 2.0, v, "2 = open")
	v, _ = value(mfs, "marty_circuit_breaker_state", map[string]string{"name": "search"})
	require.Equal(t, 0.0, v)
	v, _ = value(mfs, "marty_circuit_breaker_requests_total", map[string]string{"name": "payments", "result": "failure"})
	require.Equal(t, 3.0, v)
	v, _ = value(mfs, "marty_circuit_breaker_requests_total", map[string]string{"name": "payments", "result": "rejected"})
	require.Equal(t, 1.0, v)

	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code, "an open breaker degrades readiness")
	require.Equal(t, "degraded\n[-]circuit_breakers failing (non-critical): circuit breakers open: payments\n", body)

	require.Equal(t, 1, h.messages("circuit breaker opened", "breaker", "payments"))
}
