package fxmonitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

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

type verboseReport struct {
	Kind    string `json:"kind"`
	Status  string `json:"status"`
	Startup bool   `json:"startup_done"`
	Checks  []struct {
		Name                string     `json:"name"`
		Kinds               string     `json:"kinds"`
		Critical            bool       `json:"critical"`
		Status              string     `json:"status"`
		Error               string     `json:"error"`
		LastError           string     `json:"last_error"`
		DurationSeconds     float64    `json:"duration_seconds"`
		Since               *time.Time `json:"since"`
		LastRun             *time.Time `json:"last_run"`
		ConsecutiveFailures int        `json:"consecutive_failures"`
	} `json:"checks"`
}

func (h *harness) verbose(path string) (int, verboseReport) {
	h.t.Helper()
	code, body, hdr := h.get(path + "?verbose")
	require.Equal(h.t, "application/json", hdr.Get("Content-Type"))
	var rep verboseReport
	require.NoError(h.t, json.Unmarshal([]byte(body), &rep), body)
	return code, rep
}

func TestProbesPassingFailingDegraded(t *testing.T) {
	t.Parallel()
	db, cache, live := &toggle{}, &toggle{}, &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: db.fn}),
		fxmonitor.AsCheck(func() fxmonitor.Check {
			return fxmonitor.Check{Name: "cache", Kinds: fxmonitor.Readiness, Func: cache.fn}
		}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "loop", Kinds: fxmonitor.Liveness | fxmonitor.Readiness, Critical: true, Func: live.fn}),
	)

	code, body, hdr := h.get("/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	require.Equal(t, "text/plain; charset=utf-8", hdr.Get("Content-Type"))
	require.Equal(t, "no-store", hdr.Get("Cache-Control"))

	cache.set(errors.New("redis: connection refused"))
	code, body, _ = h.get("/readyz")
	require.Equal(t, http.StatusOK, code, "a non-critical failure degrades but stays 200")
	require.Equal(t, "degraded\n[-]cache failing (non-critical): redis: connection refused\n", body)

	db.set(errors.New("dial tcp 127.0.0.1:5432: connection refused"))
	code, body, _ = h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "failing\n"+
		"[-]cache failing (non-critical): redis: connection refused\n"+
		"[-]db failing: dial tcp 127.0.0.1:5432: connection refused\n", body)

	code, body, _ = h.get("/livez")
	require.Equal(t, http.StatusOK, code, "liveness has its own checks")
	require.Equal(t, "ok\n", body)

	code, rep := h.verbose("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "failing", rep.Status)
	require.Equal(t, "readiness", rep.Kind)
	require.Len(t, rep.Checks, 3)
	byName := map[string]int{}
	for i, c := range rep.Checks {
		byName[c.Name] = i
	}
	dbRep := rep.Checks[byName["db"]]
	require.Equal(t, "failing", dbRep.Status)
	require.True(t, dbRep.Critical)
	require.Equal(t, "dial tcp 127.0.0.1:5432: connection refused", dbRep.Error)
	require.NotNil(t, dbRep.Since)
	require.NotNil(t, dbRep.LastRun)
	require.GreaterOrEqual(t, dbRep.ConsecutiveFailures, 2)
	require.Greater(t, dbRep.DurationSeconds, 0.0)
	loopRep := rep.Checks[byName["loop"]]
	require.Equal(t, "passing", loopRep.Status)
	require.Equal(t, "liveness|readiness", loopRep.Kinds)
	require.Empty(t, loopRep.Error)

	db.set(nil)
	cache.set(nil)
	code, rep = h.verbose("/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok", rep.Status)
	require.Equal(t, "dial tcp 127.0.0.1:5432: connection refused", rep.Checks[byName["db"]].LastError, "the last error is kept")
	require.Empty(t, rep.Checks[byName["db"]].Error)

	live.set(errors.New("event loop stuck"))
	code, body, _ = h.get("/livez")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "failing\n[-]loop failing: event loop stuck\n", body)
	code, body, _ = h.get("/livez?verbose=false")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.True(t, strings.HasPrefix(body, "failing\n"), "verbose=false is plain text")

	code, _, _ = h.get("/startupz")
	require.Equal(t, http.StatusOK, code, "no startup checks: started")
}

func TestHangingCheckIsFailedAtItsTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var calls atomic.Int32
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "stuck", Kinds: fxmonitor.Readiness, Critical: true, Timeout: 200 * time.Millisecond,
			Func: func(context.Context) error { calls.Add(1); <-release; return nil }}), // ignores its context
		fxmonitor.AsCheck(fxmonitor.Check{Name: "slow", Kinds: fxmonitor.Liveness, Critical: true, Timeout: 150 * time.Millisecond,
			Func: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}), // honours it
	)
	t.Cleanup(func() { close(release) }) // runs before the app stops

	began := time.Now()
	code, body, _ := h.get("/readyz")
	took := time.Since(began)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "failing\n[-]stuck failing: timed out after 200ms\n", body)
	require.GreaterOrEqual(t, took, 200*time.Millisecond, "answered at the timeout, not before")

	code, body, _ = h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "previous run has not returned yet")
	require.EqualValues(t, 1, calls.Load(), "a check still running is not started again")

	code, body, _ = h.get("/livez")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "failing\n[-]slow failing: timed out after 150ms\n", body)
}

func TestFailureThresholdAndFlapping(t *testing.T) {
	t.Parallel()
	tg := &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "upstream", Kinds: fxmonitor.Readiness, Critical: true, FailureThreshold: 3, Func: tg.fn}),
	)
	code, _, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code)

	tg.set(errors.New("503 from upstream"))
	for i := 1; i <= 2; i++ {
		code, body, _ := h.get("/readyz")
		require.Equal(t, http.StatusOK, code, "failure %d of 3 keeps it passing", i)
		require.Equal(t, "ok\n", body)
	}
	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "the third consecutive failure flips it")
	require.Equal(t, "failing\n[-]upstream failing: 503 from upstream\n", body)

	tg.set(nil)
	code, _, _ = h.get("/readyz")
	require.Equal(t, http.StatusOK, code, "back on the first success")

	// Flapping below the threshold never fails the probe and logs no transition.
	for i := range 10 {
		if i%2 == 0 {
			tg.set(errors.New("flap"))
		} else {
			tg.set(nil)
		}
		code, _, _ = h.get("/readyz")
		require.Equal(t, http.StatusOK, code, "request %d", i)
	}
	require.Equal(t, 1, h.messages("health check failing", "check", "upstream"), "one failing transition, logged once")
	require.Equal(t, 1, h.messages("health check recovered", "check", "upstream"))
}

func TestFlappingCheckWithoutThresholdFollowsEachResult(t *testing.T) {
	t.Parallel()
	tg := &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "flappy", Kinds: fxmonitor.Readiness, Critical: true, Func: tg.fn}),
	)
	for i := range 6 {
		want := http.StatusOK
		if i%2 == 1 {
			tg.set(errors.New("flap"))
			want = http.StatusServiceUnavailable
		} else {
			tg.set(nil)
		}
		code, _, _ := h.get("/readyz")
		require.Equal(t, want, code, "request %d", i)
	}
	require.Equal(t, 3, h.messages("health check failing", "check", "flappy"), "each transition logged once")
	require.Equal(t, 2, h.messages("health check recovered", "check", "flappy"))
}

func TestOnRequestChecksAreCachedAndSingleFlight(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var calls atomic.Int32
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1h"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "gated", Kinds: fxmonitor.Readiness, Critical: true,
			Func: func(ctx context.Context) error {
				calls.Add(1)
				select {
				case <-gate:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}}),
	)
	var wg sync.WaitGroup
	codes := make([]int, 10)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = fetch(t, h.client, h.admin("/readyz"))
		}()
	}
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 2*time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // let every request arrive and wait
	close(gate)
	wg.Wait()
	for i, c := range codes {
		require.Equal(t, http.StatusOK, c, "request %d", i)
	}
	require.EqualValues(t, 1, calls.Load(), "ten concurrent requests, one run")
	for range 5 {
		code, _, _ := h.get("/readyz")
		require.Equal(t, http.StatusOK, code)
	}
	require.EqualValues(t, 1, calls.Load(), "served from cache within the TTL")
}

func TestBackgroundChecksRunOnTheirIntervalAndServeFromCache(t *testing.T) {
	t.Parallel()
	slow, fast := &toggle{}, &toggle{}
	h := start(t, quiet,
		fxmonitor.AsCheck(fxmonitor.Check{Name: "hourly", Kinds: fxmonitor.Readiness, Critical: true, Interval: time.Hour, Func: slow.fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "often", Kinds: fxmonitor.Liveness, Critical: true, Interval: 20 * time.Millisecond, Func: fast.fn}),
	)
	require.Eventually(t, func() bool { code, _, _ := h.get("/readyz"); return code == http.StatusOK }, 2*time.Second, 5*time.Millisecond,
		"runs at start")
	require.EqualValues(t, 1, slow.calls.Load())
	for range 5 {
		code, _, _ := h.get("/readyz")
		require.Equal(t, http.StatusOK, code)
	}
	require.EqualValues(t, 1, slow.calls.Load(), "requests never run a background check")
	require.Eventually(t, func() bool { return fast.calls.Load() >= 5 }, 5*time.Second, 10*time.Millisecond, "runs every interval")

	fast.set(errors.New("worker pool exhausted"))
	require.Eventually(t, func() bool { code, _, _ := h.get("/livez"); return code == http.StatusServiceUnavailable },
		5*time.Second, 10*time.Millisecond)
	code, rep := h.verbose("/livez")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "worker pool exhausted", rep.Checks[0].Error)
}

func TestStartupGatesReadinessAndLatches(t *testing.T) {
	t.Parallel()
	warm, ready := &toggle{}, &toggle{}
	warm.set(errors.New("loading model"))
	var changes []string
	var mu sync.Mutex
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "warmup", Kinds: fxmonitor.Startup, Critical: true, Func: warm.fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: ready.fn}),
		fx.Invoke(func(hl *health.Health) {
			hl.OnChange(func(k fxmonitor.Kind, ok bool) {
				mu.Lock()
				defer mu.Unlock()
				changes = append(changes, k.String()+"="+map[bool]string{true: "up", false: "down"}[ok])
			})
		}),
	)
	code, body, _ := h.get("/startupz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "starting\n[-]warmup failing: loading model\n", body)
	code, body, _ = h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "not ready before started, though db passes")
	require.Equal(t, "starting\n[-]warmup failing: loading model\n", body)
	code, _, _ = h.get("/livez")
	require.Equal(t, http.StatusOK, code)
	require.False(t, h.health.Healthy(fxmonitor.Readiness))
	require.False(t, h.health.Healthy(fxmonitor.Startup))

	warm.set(nil)
	code, body, _ = h.get("/readyz")
	require.Equal(t, http.StatusOK, code, "readiness runs the startup checks itself")
	require.Equal(t, "ok\n", body)
	code, _, _ = h.get("/startupz")
	require.Equal(t, http.StatusOK, code)
	require.True(t, h.health.Healthy(fxmonitor.Startup))
	require.True(t, h.health.StartupDone())

	warm.set(errors.New("would fail again"))
	calls := warm.calls.Load()
	code, _, _ = h.get("/startupz")
	require.Equal(t, http.StatusOK, code, "startup stays passed")
	require.Equal(t, calls, warm.calls.Load(), "startup checks are not run once started")

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"startup=up", "readiness=up"}, changes)
}

func TestReadinessFailsTheMomentShutdownBeginsWhileTheAPIServes(t *testing.T) {
	t.Parallel()
	var changes atomic.Value
	h := start(t, append(quiet, "MARTY_HTTP_DRAIN_DELAY=1500ms"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: func(context.Context) error { return nil }}),
		fxhttp.AsRoute("GET /v1/ping", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("pong")) })),
	)
	require.True(t, h.health.Healthy(fxmonitor.Readiness))
	h.health.OnChange(func(k fxmonitor.Kind, ok bool) {
		if k == fxmonitor.Readiness {
			changes.Store(ok)
		}
	})
	code, _, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code)

	stopped := make(chan error, 1)
	h.stopped.Store(true)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- h.app.Stop(ctx) // fxhttp's stop begins with Stopping.Begin, then drains for 1.5s
	}()
	require.Eventually(t, func() bool { v, _ := changes.Load().(bool); return changes.Load() != nil && !v },
		time.Second, time.Millisecond, "listeners hear of it at once")
	require.False(t, h.health.Healthy(fxmonitor.Readiness))
	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "shutting down\n", body)
	code, body, _ = fetch(t, h.client, "http://"+h.srv.Addr()+"/v1/ping")
	require.Equal(t, http.StatusOK, code, "the API still serves during the drain")
	require.Equal(t, "pong", body)
	code, _, _ = h.get("/livez")
	require.Equal(t, http.StatusOK, code, "liveness is not affected")
	require.NoError(t, <-stopped)
	require.Equal(t, 1, h.messages("shutdown has begun: readiness is now failing", "", ""))
}

func TestCheckPanicIsAFailure(t *testing.T) {
	t.Parallel()
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "buggy", Kinds: fxmonitor.Readiness, Critical: true,
			Func: func(context.Context) error { panic("nil map") }}),
	)
	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "failing\n[-]buggy failing: check panicked: nil map\n", body)
}

func TestHealthMetrics(t *testing.T) {
	t.Parallel()
	tg := &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness | fxmonitor.Liveness, Critical: true, Func: tg.fn}),
	)
	mfs := h.scrape()
	v, ok := value(mfs, "marty_health_check_status", map[string]string{"check": "db", "kind": "readiness"})
	require.True(t, ok)
	require.Equal(t, 0.0, v, "not known before the first run")

	for range 3 {
		code, _, _ := h.get("/readyz")
		require.Equal(t, http.StatusOK, code)
	}
	mfs = h.scrape()
	for _, kind := range []string{"readiness", "liveness"} {
		v, ok = value(mfs, "marty_health_check_status", map[string]string{"check": "db", "kind": kind})
		require.True(t, ok)
		require.Equal(t, 1.0, v, kind)
	}
	v, ok = value(mfs, "marty_health_check_duration_seconds", map[string]string{"check": "db"})
	require.True(t, ok)
	require.Equal(t, 3.0, v, "one observation per run")

	tg.set(errors.New("down"))
	code, _, _ := h.get("/livez")
	require.Equal(t, http.StatusServiceUnavailable, code)
	mfs = h.scrape()
	for _, kind := range []string{"readiness", "liveness"} {
		v, _ = value(mfs, "marty_health_check_status", map[string]string{"check": "db", "kind": kind})
		require.Equal(t, 0.0, v, kind)
	}
}

func TestBuiltinChecksAreNonCritical(t *testing.T) {
	t.Parallel()
	// A 0.001% threshold makes both built-in checks fail on any machine.
	h := start(t, []string{"MARTY_MONITOR_DISK_MAX_PERCENT=0.001", "MARTY_MONITOR_MEMORY_MAX_PERCENT=0.001", "MARTY_MONITOR_DISK_PATH=/"})
	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code, body)
	require.True(t, strings.HasPrefix(body, "degraded\n"), body)
	require.Contains(t, body, "[-]disk failing (non-critical): disk / is ")
	require.Contains(t, body, "% used, above 0%")
	require.Contains(t, body, "[-]memory failing (non-critical): memory is ")

	h = start(t, nil)
	_, rep := h.verbose("/readyz")
	names := []string{}
	for _, c := range rep.Checks {
		names = append(names, c.Name)
		require.False(t, c.Critical)
	}
	require.ElementsMatch(t, []string{"circuit_breakers", "disk", "memory"}, names, "on by default")
}

func TestBadChecksAndConfigFailStart(t *testing.T) {
	t.Parallel()
	fn := func(context.Context) error { return nil }
	_, err := newApp(t, quiet,
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Func: fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Liveness, Func: fn}),
	)
	require.ErrorContains(t, err, `fxmonitor: two health checks are named "db"`)

	_, err = newApp(t, quiet, fxmonitor.AsCheck(func() string { return "db" }))
	require.Regexp(t, `fxmonitor\.AsCheck: fxmonitor_test\.\S+: constructor func\(\) string: got string, want fxmonitor\.Check`, err.Error())

	_, err = newApp(t, quiet, fxmonitor.AsCheck(fxmonitor.Check{Name: "nokind", Func: fn}))
	require.ErrorContains(t, err, `check "nokind" needs a Name, Kinds and a Func`)

	for env, want := range map[string]string{
		"MARTY_MONITOR_CHECK_TTL=0s":                      `fxcore: invalid MARTY_MONITOR_CHECK_TTL="0s": want a positive duration`,
		"MARTY_MONITOR_CHECK_TIMEOUT=soon":                `fxcore: invalid MARTY_MONITOR_CHECK_TIMEOUT="soon": want a duration such as 500ms, 5s or 1m`,
		"MARTY_MONITOR_DISK_MAX_PERCENT=150":              `fxcore: invalid MARTY_MONITOR_DISK_MAX_PERCENT=150: want a percentage in (0, 100]`,
		"MARTY_MONITOR_ALERTMANAGER_URL=ftp://am:9093":    `fxcore: invalid MARTY_MONITOR_ALERTMANAGER_URL="ftp://am:9093": want an http(s) URL`,
		"MARTY_MONITOR_BREAKERS_PAYMENTS_FAILURE_RATIO=2": `fxcore: invalid MARTY_MONITOR_BREAKERS_PAYMENTS_FAILURE_RATIO=2: want a ratio in [0, 1]`,
	} {
		_, err = newApp(t, []string{env})
		require.ErrorContains(t, err, want, env)
	}
}

func TestListenersHearOfOnRequestChecksWithoutProbeTraffic(t *testing.T) {
	t.Parallel()
	tg := &toggle{}
	var last atomic.Value
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns", "MARTY_MONITOR_WATCH_INTERVAL=20ms"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: tg.fn}),
		fx.Invoke(func(hl *health.Health) {
			hl.OnChange(func(k fxmonitor.Kind, ok bool) {
				if k == fxmonitor.Readiness {
					last.Store(ok)
				}
			})
		}),
	)
	require.Eventually(t, func() bool { v, _ := last.Load().(bool); return v }, 5*time.Second, 5*time.Millisecond)
	tg.set(errors.New("down"))
	require.Eventually(t, func() bool { v, _ := last.Load().(bool); return !v }, 5*time.Second, 5*time.Millisecond)
	tg.set(nil)
	require.Eventually(t, func() bool { v, _ := last.Load().(bool); return v }, 5*time.Second, 5*time.Millisecond)
	require.True(t, h.health.Healthy(fxmonitor.Readiness))
}
