package breaker_test

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/internal/metrictest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fxhttp and fxgrpc clients take a breaker through this interface.
var _ interface{ Execute(func() error) error } = (*breaker.Breaker)(nil)

func newBreakers(t *testing.T, cfg breaker.Config, reg prometheus.Registerer) *breaker.Breakers {
	t.Helper()
	bs, err := breaker.New(cfg, breaker.Options{Registerer: reg})
	require.NoError(t, err)
	return bs
}

func TestHalfOpenFailureReopens(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	bs := newBreakers(t, breaker.Config{
		Named: map[string]breaker.Settings{"Payments_API": {Timeout: 50 * time.Millisecond, ConsecutiveFailures: 1}},
	}, reg)
	br := bs.Get("payments-api")
	require.Same(t, br, bs.Get("payments-api"))
	require.Equal(t, 50*time.Millisecond, br.Settings().Timeout, "names match config keys case-insensitively with - as _")
	boom := errors.New("down")
	require.ErrorIs(t, br.Execute(func() error { return boom }), boom)
	require.Equal(t, breaker.Open, br.State())
	require.Equal(t, []string{"payments-api"}, bs.Open())
	require.Equal(t, 2.0, metrictest.Value(t, reg, "marty_circuit_breaker_state", map[string]string{"name": "payments-api"}))
	require.Eventually(t, func() bool { return br.State() == breaker.HalfOpen }, 2*time.Second, 5*time.Millisecond)
	require.ErrorIs(t, br.Execute(func() error { return boom }), boom)
	require.Equal(t, breaker.Open, br.State(), "a failed trial opens it again")
	require.Equal(t, 2.0, metrictest.Value(t, reg, "marty_circuit_breaker_requests_total",
		map[string]string{"name": "payments-api", "result": "failure"}))
}

func TestWithoutRegistryOrConfig(t *testing.T) {
	t.Parallel()
	plain := newBreakers(t, breaker.Config{}, nil).Get("x")
	require.Equal(t, breaker.DefaultSettings(), plain.Settings())
	require.NoError(t, plain.Execute(func() error { return nil }))
	require.Equal(t, breaker.Counts{Requests: 1, TotalSuccesses: 1, ConsecutiveSuccesses: 1}, plain.Counts())
}

func TestFailureRatio(t *testing.T) {
	t.Parallel()
	bs := newBreakers(t, breaker.Config{Defaults: breaker.Settings{
		FailureRatio: 0.5, MinRequests: 4, ConsecutiveFailures: 100}}, nil)
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
	require.Equal(t, breaker.Closed, br.State(), "3 calls are below MinRequests")
	_ = br.Execute(func() error { return boom })
	require.Equal(t, breaker.Open, br.State(), "2 of 4 failed: ratio 0.5 reached")
}

// The errors of an open breaker are this package's: they match ErrOpen and
// unwrap to nothing of gobreaker's.
func TestOpenErrorsAreOurOwn(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	core, logs := observer.New(zap.InfoLevel)
	bs, err := breaker.New(breaker.Config{Defaults: breaker.Settings{ConsecutiveFailures: 1, Timeout: 40 * time.Millisecond}},
		breaker.Options{Registerer: reg, Logger: zap.New(core)})
	require.NoError(t, err)
	br := bs.Get("payments")
	_ = br.Execute(func() error { return errors.New("502") })
	called := false
	err = br.Execute(func() error { called = true; return nil })
	require.False(t, called, "an open breaker does not call")
	require.ErrorIs(t, err, breaker.ErrOpen)
	require.EqualError(t, err, `fxmonitor: circuit breaker "payments" is open`)
	require.Nil(t, errors.Unwrap(err))

	// Half-open lets one trial call through; a second one at the same time is refused.
	require.Eventually(t, func() bool { return br.State() == breaker.HalfOpen }, 2*time.Second, 5*time.Millisecond)
	require.Equal(t, 1.0, metrictest.Value(t, reg, "marty_circuit_breaker_state", map[string]string{"name": "payments"}), "1 = half-open")
	inTrial, release := make(chan struct{}), make(chan struct{})
	trialDone := make(chan error, 1)
	go func() { trialDone <- br.Execute(func() error { close(inTrial); <-release; return nil }) }()
	<-inTrial
	err = br.Execute(func() error { return nil })
	require.ErrorIs(t, err, breaker.ErrOpen)
	require.EqualError(t, err, `fxmonitor: circuit breaker "payments" is half-open and its trial calls are taken`)
	close(release)
	require.NoError(t, <-trialDone)
	require.Equal(t, breaker.Closed, br.State(), "a successful trial closes it")
	require.Equal(t, 0.0, metrictest.Value(t, reg, "marty_circuit_breaker_state", map[string]string{"name": "payments"}))
	require.Equal(t, 2.0, metrictest.Value(t, reg, "marty_circuit_breaker_requests_total",
		map[string]string{"name": "payments", "result": "rejected"}))
	var states []string
	for _, e := range logs.FilterField(zap.String("breaker", "payments")).All() {
		states = append(states, e.ContextMap()["from"].(string)+"->"+e.ContextMap()["to"].(string))
	}
	require.Equal(t, []string{"closed->open", "open->half-open", "half-open->closed"}, states, "each transition logged once")
	require.Equal(t, 1, logs.FilterMessage("circuit breaker opened").Len())

	n, err := breaker.Call(br, func() (int, error) { return 42, nil })
	require.NoError(t, err)
	require.Equal(t, 42, n)
}

func TestInvalidConfigAndRegistration(t *testing.T) {
	t.Parallel()
	_, err := breaker.New(breaker.Config{Named: map[string]breaker.Settings{"payments": {FailureRatio: 2}}}, breaker.Options{})
	require.ErrorContains(t, err, "fxmonitor: circuit breaker config:")
	var fe *fxcore.FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "breakers.payments.failure_ratio", fe.Key)
	_, err = breaker.New(breaker.Config{Defaults: breaker.Settings{Timeout: -time.Second}}, breaker.Options{})
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "breaker.timeout", fe.Key)

	reg := prometheus.NewRegistry()
	newBreakers(t, breaker.Config{}, reg)
	_, err = breaker.New(breaker.Config{}, breaker.Options{Registerer: reg})
	require.ErrorContains(t, err, "fxmonitor: register the metrics marty_circuit_breaker_state and marty_circuit_breaker_requests_total")
}

func TestStateString(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{"closed", "half-open", "open", "State(9)"},
		[]string{breaker.Closed.String(), breaker.HalfOpen.String(), breaker.Open.String(), breaker.State(9).String()})
}
