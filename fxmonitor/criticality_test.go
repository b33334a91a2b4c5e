package fxmonitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/alert"
)

// MARTY_MONITOR_CHECKS_<NAME>_CRITICAL turns a check's Critical flag either
// way, whatever its module chose; names match like breaker names.
func TestCriticalOverrideFromConfig(t *testing.T) {
	t.Parallel()
	db, cache, store := &toggle{}, &toggle{}, &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns",
		"MARTY_MONITOR_CHECKS_DB_CRITICAL=false", "MARTY_MONITOR_CHECKS_CACHE_CRITICAL=true",
		"MARTY_MONITOR_CHECKS_ORDERS_STORE_CRITICAL=false"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: db.fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "cache", Kinds: fxmonitor.Readiness, Func: cache.fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "orders-store", Kinds: fxmonitor.Readiness, Critical: true, Func: store.fn}),
	)
	_, rep := h.verbose("/readyz")
	critical := map[string]bool{}
	for _, c := range rep.Checks {
		critical[c.Name] = c.Critical
	}
	require.Equal(t, map[string]bool{"db": false, "cache": true, "orders-store": false}, critical)

	db.set(errors.New("db down"))
	store.set(errors.New("store down"))
	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code, "made non-critical: degraded, still 200")
	require.Equal(t, "degraded\n[-]db failing (non-critical): db down\n[-]orders-store failing (non-critical): store down\n", body)

	cache.set(errors.New("cache down"))
	code, body, _ = h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code, "made critical: failing, 503")
	require.Contains(t, body, "[-]cache failing: cache down\n")
}

func TestCriticalOverrideOfAnUnknownCheckFailsStart(t *testing.T) {
	t.Parallel()
	fn := func(context.Context) error { return nil }
	_, err := newApp(t, append(quiet, "MARTY_MONITOR_CHECKS_NAST_CRITICAL=false"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "nats", Kinds: fxmonitor.Readiness, Func: fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Func: fn}),
	)
	require.ErrorContains(t, err, `fxmonitor: the critical override of "nast" (MARTY_MONITOR_CHECKS_NAST_CRITICAL) matches no health check (the checks are: db, nats)`)

	_, err = newApp(t, append(quiet, "MARTY_MONITOR_CHECKS_NATS_CRITICAL=maybe"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "nats", Kinds: fxmonitor.Readiness, Func: fn}))
	require.ErrorContains(t, err, "MARTY_MONITOR_CHECKS_NATS_CRITICAL")
}

// marty_health_check_failing is 1 only while a check is failing: a check
// not run yet is 0 there (marty_health_check_status cannot tell it from a
// failure), so the built-in alerts never fire on a check nobody probed.
func TestHealthCheckFailingMetric(t *testing.T) {
	t.Parallel()
	db, cache := &toggle{}, &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns"),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: db.fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "cache", Kinds: fxmonitor.Readiness, Func: cache.fn}),
	)
	failing := func(check, critical string) float64 {
		t.Helper()
		v, ok := value(h.scrape(), "marty_health_check_failing", map[string]string{"check": check, "critical": critical})
		require.True(t, ok, "series %s critical=%s", check, critical)
		return v
	}
	require.Equal(t, 0.0, failing("db", "true"), "not known yet: not failing")
	require.Equal(t, 0.0, failing("cache", "false"))

	cache.set(errors.New("down"))
	code, _, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 1.0, failing("cache", "false"))
	require.Equal(t, 0.0, failing("db", "true"))

	cache.set(nil)
	h.get("/readyz")
	require.Equal(t, 0.0, failing("cache", "false"), "back to 0 on recovery")
}

// A failing check raises a built-in alert carrying its name: a
// non-critical one MartyHealthCheckDegraded (warning) while readiness stays
// 200, a critical one MartyHealthCheckFailing (critical); both show in
// /alerts, /statusz and the dashboard, and resolve with the check.
func TestFailingChecksFireTheBuiltinAlerts(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	nats, db, idle := &toggle{}, &toggle{}, &toggle{}
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_TTL=1ns", "MARTY_MONITOR_ALERT_INTERVAL=1h", "MARTY_MONITOR_CHECK_ALERT_FOR=30s"),
		withClock(clock),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "nats", Kinds: fxmonitor.Readiness, Func: nats.fn}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: db.fn}),
		// Never probed: unknown, which must not alert.
		fxmonitor.AsCheck(fxmonitor.Check{Name: "idle", Kinds: fxmonitor.Liveness, Critical: true, Func: idle.fn}),
	)
	h.get("/readyz")
	h.alerts.Evaluate()
	require.Empty(t, h.activeAlerts(), "every probed check passes, the idle one is unknown")

	nats.set(errors.New("natsjs: disconnected from nats://127.0.0.1:4222"))
	code, body, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "degraded\n[-]nats failing (non-critical): natsjs: disconnected from nats://127.0.0.1:4222\n", body)
	h.alerts.Evaluate()
	act := h.activeAlerts()
	require.Len(t, act, 1)
	require.Equal(t, alert.Pending, act[0].State)
	clock.Add(31 * time.Second)
	h.alerts.Evaluate()
	act = h.activeAlerts()
	require.Len(t, act, 1)
	require.Equal(t, alert.Firing, act[0].State, "firing once failing for MARTY_MONITOR_CHECK_ALERT_FOR")
	require.Equal(t, map[string]string{"alertname": fxmonitor.AlertCheckDegraded, "check": "nats", "critical": "false",
		"severity": "warning", "service": "orders"}, act[0].Labels)
	require.Equal(t, "Health check nats is failing: the service is degraded", act[0].Annotations["summary"])

	var st statusz
	code, body, _ = h.get("/statusz")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Equal(t, "degraded", st.Probes["readiness"])
	require.Len(t, st.Alerts, 1)
	require.Equal(t, "nats", st.Alerts[0].Labels["check"])

	var dash dashState
	code, body, _ = h.get("/dashboard/api/state")
	require.Equal(t, http.StatusOK, code)
	require.NoError(t, json.Unmarshal([]byte(body), &dash))
	require.Len(t, dash.Alerts, 1, "the dashboard shows the alert")
	require.Equal(t, "nats", dash.Alerts[0].Labels["check"])

	db.set(errors.New("dial tcp 127.0.0.1:5432: connection refused"))
	code, _, _ = h.get("/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	h.alerts.Evaluate()
	clock.Add(31 * time.Second)
	h.alerts.Evaluate()
	act = h.activeAlerts()
	require.Len(t, act, 2)
	require.Equal(t, fxmonitor.AlertCheckFailing, act[1].Rule, "firing alerts sorted by rule")
	require.Equal(t, alert.Firing, act[1].State)
	require.Equal(t, "db", act[1].Labels["check"])
	require.Equal(t, "critical", act[1].Labels["severity"])
	require.Equal(t, "true", act[1].Labels["critical"])

	nats.set(nil)
	db.set(nil)
	h.get("/readyz")
	clock.Add(15 * time.Second)
	h.alerts.Evaluate()
	for _, a := range h.activeAlerts() {
		require.Equal(t, alert.Resolved, a.State, a.Rule)
	}
	require.Zero(t, idle.calls.Load(), "the idle check never ran")
}

func TestBuiltinCheckAlertRulesInTheRuleFile(t *testing.T) {
	t.Parallel()
	fn := func(context.Context) error { return nil }
	check := fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: fn})
	h := start(t, append(quiet, "MARTY_MONITOR_CHECK_ALERT_FOR=2m"), check)
	byName := map[string]int{}
	f := h.ruleFile()
	for i, r := range f.Groups[0].Rules {
		byName[r.Alert] = i
	}
	for name, want := range map[string]string{
		fxmonitor.AlertCheckFailing:  `marty_health_check_failing{critical="true"} == 1`,
		fxmonitor.AlertCheckDegraded: `marty_health_check_failing{critical="false"} == 1`,
	} {
		i, ok := byName[name]
		require.True(t, ok, name)
		r := f.Groups[0].Rules[i]
		require.Equal(t, "2m", r.For)
		require.Equal(t, want, r.Expr)
	}
	require.Equal(t, "critical", f.Groups[0].Rules[byName[fxmonitor.AlertCheckFailing]].Labels["severity"])
	require.Equal(t, "warning", f.Groups[0].Rules[byName[fxmonitor.AlertCheckDegraded]].Labels["severity"])

	h = start(t, append(quiet, "MARTY_MONITOR_CHECK_ALERTS=false"), check)
	require.Empty(t, h.alerts.Rules(), "turned off")
	h = start(t, quiet)
	require.Empty(t, h.alerts.Rules(), "no checks, no rules on them")
}
