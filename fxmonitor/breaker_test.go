package fxmonitor_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxmonitor"
)

// fxhttp and fxgrpc clients take a breaker through this interface.
var _ interface{ Execute(func() error) error } = (*fxmonitor.Breaker)(nil)

func TestBreakerOpensHalfOpensAndCloses(t *testing.T) {
	h := start(t, []string{
		"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false", "MARTY_MONITOR_CHECK_TTL=1ns",
		"MARTY_MONITOR_BREAKERS_PAYMENTS_TIMEOUT=300ms", "MARTY_MONITOR_BREAKERS_PAYMENTS_CONSECUTIVE_FAILURES=3",
		"MARTY_MONITOR_BREAKER_TIMEOUT=45s",
	})
	br := h.breakers.Get("payments")
	require.Same(t, br, h.breakers.Get("payments"))
	require.Equal(t, 300*time.Millisecond, br.Settings().Timeout, "per-name setting")
	require.EqualValues(t, 3, br.Settings().ConsecutiveFailures)
	require.EqualValues(t, 1, br.Settings().MaxRequests, "default")
	other := h.breakers.Get("search")
	require.Equal(t, 45*time.Second, other.Settings().Timeout, "MARTY_MONITOR_BREAKER_* sets every breaker's default")
	require.EqualValues(t, 5, other.Settings().ConsecutiveFailures)

	boom := errors.New("payments: 502")
	for range 3 {
		require.ErrorIs(t, br.Execute(func() error { return boom }), boom, "the call's own error")
	}
	require.Equal(t, fxmonitor.BreakerOpen, br.State())
	called := false
	err := br.Execute(func() error { called = true; return nil })
	require.False(t, called, "an open breaker does not call")
	require.ErrorIs(t, err, fxmonitor.ErrBreakerOpen)
	require.ErrorIs(t, err, gobreaker.ErrOpenState)
	require.EqualError(t, err, `fxmonitor: circuit breaker "payments": circuit breaker is open`)

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

	require.Eventually(t, func() bool { return br.State() == fxmonitor.BreakerHalfOpen }, 3*time.Second, 10*time.Millisecond)
	v, _ = value(h.scrape(), "marty_circuit_breaker_state", map[string]string{"name": "payments"})
	require.Equal(t, 1.0, v, "1 = half-open")

	// Half-open lets one trial call through; a second one at the same time is refused.
	inTrial, release := make(chan struct{}), make(chan struct{})
	trialDone := make(chan error, 1)
	go func() {
		trialDone <- br.Execute(func() error { close(inTrial); <-release; return nil })
	}()
	<-inTrial
	err = br.Execute(func() error { return nil })
	require.ErrorIs(t, err, fxmonitor.ErrBreakerOpen)
	require.ErrorIs(t, err, gobreaker.ErrTooManyRequests)
	close(release)
	require.NoError(t, <-trialDone)
	require.Equal(t, fxmonitor.BreakerClosed, br.State(), "a successful trial closes it")
	v, _ = value(h.scrape(), "marty_circuit_breaker_state", map[string]string{"name": "payments"})
	require.Equal(t, 0.0, v)
	code, _, _ = h.get("/readyz")
	require.Equal(t, http.StatusOK, code)

	n, err := fxmonitor.Call(br, func() (int, error) { return 42, nil })
	require.NoError(t, err)
	require.Equal(t, 42, n)

	require.Equal(t, 1, h.messages("circuit breaker opened", "breaker", "payments"))
	states := []string{}
	for _, e := range h.logs.FilterField(fieldString("breaker", "payments")).All() {
		states = append(states, e.ContextMap()["from"].(string)+"->"+e.ContextMap()["to"].(string))
	}
	require.Equal(t, []string{"closed->open", "open->half-open", "half-open->closed"}, states, "each transition logged once")
}

func TestBreakerHalfOpenFailureReopens(t *testing.T) {
	reg := prometheus.NewRegistry()
	bs := fxmonitor.NewBreakers(fxmonitor.BreakersConfig{
		Named: map[string]fxmonitor.BreakerSettings{"Payments_API": {Timeout: 50 * time.Millisecond, ConsecutiveFailures: 1}},
	}, reg, nil)
	br := bs.Get("payments-api")
	require.Equal(t, 50*time.Millisecond, br.Settings().Timeout, "names match config keys case-insensitively with - as _")
	boom := errors.New("down")
	require.ErrorIs(t, br.Execute(func() error { return boom }), boom)
	require.Equal(t, fxmonitor.BreakerOpen, br.State())
	require.Eventually(t, func() bool { return br.State() == fxmonitor.BreakerHalfOpen }, 2*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, br.Execute(func() error { return boom }), boom)
	require.Equal(t, fxmonitor.BreakerOpen, br.State(), "a failed trial opens it again")

	// Without Fx and without a registry it still works.
	plain := fxmonitor.NewBreakers(fxmonitor.BreakersConfig{}, nil, nil).Get("x")
	require.EqualValues(t, 5, plain.Settings().ConsecutiveFailures)
	require.NoError(t, plain.Execute(func() error { return nil }))
}

func TestBreakerFailureRatio(t *testing.T) {
	bs := fxmonitor.NewBreakers(fxmonitor.BreakersConfig{Defaults: fxmonitor.BreakerSettings{
		FailureRatio: 0.5, MinRequests: 4, ConsecutiveFailures: 100}}, nil, nil)
	br := bs.Get("ratio")
	boom := errors.New("x")
	for _, fail := range []bool{false, true, false} {
		_ = br.Execute(func() error {
			if fail {
				return boom
			}
			return nil
		})
	}
	require.Equal(t, fxmonitor.BreakerClosed, br.State(), "3 calls are below MinRequests")
	_ = br.Execute(func() error { return boom })
	require.Equal(t, fxmonitor.BreakerOpen, br.State(), "2 of 4 failed: ratio 0.5 reached")
}
