package health_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// toggle is a check function whose result the test sets.
type toggle struct {
	err   atomic.Pointer[error]
	calls atomic.Int32
}

func (tg *toggle) set(err error) {
	if err == nil {
		tg.err.Store(nil)
		return
	}
	tg.err.Store(&err)
}

func (tg *toggle) fn(context.Context) error {
	tg.calls.Add(1)
	if p := tg.err.Load(); p != nil {
		return *p
	}
	return nil
}

func ok(context.Context) error { return nil }

func TestStopHonoursItsDeadlineWithAHungCheck(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	h, err := health.New([]health.Check{{Name: "hung", Kinds: health.Readiness, Critical: true,
		Timeout: 50 * time.Millisecond, Func: func(context.Context) error { <-release; return nil }}}, health.Options{})
	require.NoError(t, err)
	require.NoError(t, h.Start(context.Background()))
	require.False(t, h.Healthy(health.Readiness))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = h.Stop(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "fxmonitor: health checks still running at the stop deadline")
	close(release)
	require.NoError(t, h.Stop(context.Background()), "returns once the check does")
}

func TestOnChangeListenerMayCallHealthy(t *testing.T) {
	t.Parallel()
	tg := &toggle{}
	h, err := health.New([]health.Check{{Name: "db", Kinds: health.Readiness, Critical: true, Func: tg.fn}},
		health.Options{TTL: time.Nanosecond})
	require.NoError(t, err)
	var seen []bool
	h.OnChange(func(k health.Kind, ok bool) {
		if k == health.Readiness {
			seen = append(seen, ok)
			_ = h.Healthy(health.Readiness) // re-entrant: runs the check again
		}
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.True(t, h.Healthy(health.Readiness))
		tg.set(errors.New("down"))
		require.False(t, h.Healthy(health.Readiness))
		h.BeginShutdown()
		tg.set(nil)
		require.False(t, h.Healthy(health.Readiness), "never ready again once shutdown began")
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a listener calling Healthy deadlocked")
	}
	require.Equal(t, []bool{true, false}, seen)
	require.NoError(t, h.Stop(context.Background()))
}

func TestCriticalOverridesMatchNamesLikeConfigKeys(t *testing.T) {
	t.Parallel()
	_, err := health.New([]health.Check{{Name: "db", Kinds: health.Readiness, Func: ok}},
		health.Options{Critical: map[string]bool{"Cache": true}})
	require.ErrorContains(t, err, `the critical override of "Cache" (MARTY_MONITOR_CHECKS_CACHE_CRITICAL) matches no health check (the checks are: db)`)

	h, err := health.New([]health.Check{{Name: "Orders.DB", Kinds: health.Readiness, Func: ok}},
		health.Options{Critical: map[string]bool{"orders_db": true}})
	require.NoError(t, err)
	require.True(t, h.Results()[0].Critical, "matched case-insensitively with '.' read as '_'")
}

// Options.Stopping wires readiness to the stop sequence: it fails the
// moment shutdown begins, without anyone calling BeginShutdown.
func TestStoppingTurnsReadinessOff(t *testing.T) {
	t.Parallel()
	stopping := fxcore.NewStopping()
	h, err := health.New([]health.Check{{Name: "db", Kinds: health.Readiness, Critical: true, Func: ok}},
		health.Options{Stopping: stopping})
	require.NoError(t, err)
	require.True(t, h.Healthy(health.Readiness))
	require.False(t, h.ShuttingDown())
	stopping.Begin()
	require.True(t, h.ShuttingDown())
	require.False(t, h.Healthy(health.Readiness))
	require.Equal(t, health.VerdictShuttingDown, h.Probe(context.Background(), health.Readiness))
	require.True(t, h.Healthy(health.Liveness), "liveness is not affected")
}

func TestInvalidChecksAreRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		checks []health.Check
		want   string
	}{
		{[]health.Check{{Name: "x", Kinds: health.Readiness}}, `fxmonitor: check "x" needs a Name, Kinds and a Func`},
		{[]health.Check{{Kinds: health.Readiness, Func: ok}}, `fxmonitor: check "" needs a Name, Kinds and a Func`},
		{[]health.Check{{Name: "x", Kinds: 8, Func: ok}}, `fxmonitor: check "x": unknown kinds 8`},
		{[]health.Check{{Name: "x", Kinds: health.Readiness, Timeout: -1, Func: ok}}, `fxmonitor: check "x": negative Timeout`},
		{[]health.Check{{Name: "x", Kinds: health.Readiness, Func: ok}, {Name: "x", Kinds: health.Liveness, Func: ok}},
			`fxmonitor: two health checks are named "x"`},
	} {
		_, err := health.New(tc.checks, health.Options{})
		require.ErrorContains(t, err, tc.want)
	}
}

// A metric already on the registry under the same name is an error that
// names it.
func TestNewNamesTheMetricItCannotRegister(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "marty_health_check_failing", Help: "taken"}))
	_, err := health.New(nil, health.Options{Registerer: reg})
	require.ErrorContains(t, err, `fxmonitor: register health metric "marty_health_check_failing"`)
}

// Verdicts reads the cached results: it runs nothing.
func TestVerdictsRunNoCheck(t *testing.T) {
	t.Parallel()
	tg := &toggle{}
	h, err := health.New([]health.Check{{Name: "db", Kinds: health.Readiness, Critical: true, Func: tg.fn}}, health.Options{})
	require.NoError(t, err)
	require.Equal(t, map[string]health.Verdict{"startup": health.VerdictOK, "liveness": health.VerdictOK,
		"readiness": health.VerdictFailing}, h.Verdicts(), "not run yet: not passing")
	require.Zero(t, tg.calls.Load())
	require.True(t, h.Healthy(health.Readiness))
	require.Equal(t, health.VerdictOK, h.Verdicts()["readiness"])
	require.EqualValues(t, 1, tg.calls.Load())
}

func TestStatusText(t *testing.T) {
	t.Parallel()
	for _, s := range []health.Status{health.StatusUnknown, health.StatusPassing, health.StatusFailing} {
		b, err := s.MarshalText()
		require.NoError(t, err)
		var back health.Status
		require.NoError(t, back.UnmarshalText(b))
		require.Equal(t, s, back)
	}
	var s health.Status
	require.ErrorContains(t, s.UnmarshalText([]byte("sick")), `fxmonitor: unknown check status "sick"`)
	require.Equal(t, "liveness|readiness", (health.Liveness | health.Readiness).String())
	require.Equal(t, "Kind(0)", health.Kind(0).String())
}

func TestReadinessWaitsForTheAppToHaveStarted(t *testing.T) {
	t.Parallel()
	stopping := fxcore.NewStopping()
	listening := stopping.ExpectStart() // a server built, not yet listening
	h, err := health.New([]health.Check{{Name: "db", Kinds: health.Readiness, Critical: true, Func: ok}},
		health.Options{Stopping: stopping})
	require.NoError(t, err)
	heard := make(chan bool, 4)
	h.OnChange(func(kind health.Kind, healthy bool) {
		if kind == health.Readiness {
			heard <- healthy
		}
	})
	require.NoError(t, h.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, h.Stop(context.Background())) })

	require.False(t, h.Healthy(health.Readiness), "every check passes, but a start hook is still to run")
	require.Equal(t, health.VerdictStarting, h.Probe(context.Background(), health.Readiness))
	require.True(t, h.Healthy(health.Liveness), "liveness does not wait")

	listening()
	select {
	case healthy := <-heard:
		require.True(t, healthy, "the listeners (gRPC health) hear readiness turn on by itself")
	case <-time.After(10 * time.Second):
		t.Fatal("no readiness change after the app started")
	}
	require.Equal(t, health.VerdictOK, h.Probe(context.Background(), health.Readiness))
}
