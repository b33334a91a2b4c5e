package fxmonitor_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.yaml.in/yaml/v3"

	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/internal/amtest"
)

// fakeClock is the controllable clock the evaluator reads.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func withClock(c *fakeClock) fx.Option {
	return fx.Supply(fx.Annotate(c, fx.As(new(alert.Clock))))
}

func (h *harness) activeAlerts() []alert.Alert {
	h.t.Helper()
	code, body, hdr := h.get("/alerts")
	require.Equal(h.t, http.StatusOK, code)
	require.Equal(h.t, "application/json", hdr.Get("Content-Type"))
	var doc struct {
		Alerts []alert.Alert `json:"alerts"`
	}
	require.NoError(h.t, json.Unmarshal([]byte(body), &doc), body)
	return doc.Alerts
}

func TestAlertRuleGoesPendingFiringResolved(t *testing.T) {
	t.Parallel()
	am := amtest.New(t)
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "queue_depth", Help: "Items waiting."}, []string{"queue"})
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=1h", "MARTY_MONITOR_ALERTMANAGER_URL="+am.URL),
		withClock(clock),
		fxmonitor.AsCollector(depth),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{
			Name: "QueueBacklog", Metric: "queue_depth", Op: fxmonitor.OpGreater, Threshold: 10, For: time.Minute,
			Severity: "critical", Summary: "Queue {{ $labels.queue }} has {{ $value }} items",
		}),
	)
	depth.WithLabelValues("emails").Set(5)
	depth.WithLabelValues("sms").Set(3)
	h.alerts.Evaluate()
	require.Empty(t, h.activeAlerts(), "inactive")

	depth.WithLabelValues("emails").Set(20)
	t0 := clock.Now()
	h.alerts.Evaluate()
	act := h.activeAlerts()
	require.Len(t, act, 1, "only the series over the threshold")
	require.Equal(t, alert.Pending, act[0].State)
	require.Equal(t, "emails", act[0].Labels["queue"])
	require.Equal(t, "QueueBacklog", act[0].Labels["alertname"])
	require.Equal(t, "orders", act[0].Labels["service"])
	require.True(t, act[0].ActiveAt.Equal(t0))
	require.Equal(t, 20.0, act[0].Value)

	clock.Add(30 * time.Second)
	h.alerts.Evaluate()
	require.Equal(t, alert.Pending, h.activeAlerts()[0].State, "pending until For has passed")
	v, _ := value(h.scrape(), "marty_alerts", map[string]string{"alertname": "QueueBacklog", "state": "pending"})
	require.Equal(t, 1.0, v)
	require.Empty(t, am.Received(), "pending alerts are not sent")

	clock.Add(31 * time.Second)
	fired := clock.Now()
	h.alerts.Evaluate()
	act = h.activeAlerts()
	require.Equal(t, alert.Firing, act[0].State)
	require.True(t, act[0].FiredAt.Equal(fired))
	v, _ = value(h.scrape(), "marty_alerts", map[string]string{"alertname": "QueueBacklog", "state": "firing"})
	require.Equal(t, 1.0, v)

	require.Eventually(t, func() bool { return len(am.Received()) == 1 }, 5*time.Second, 10*time.Millisecond)
	got := am.Received()[0]
	require.Len(t, got, 1)
	require.Equal(t, map[string]string{"alertname": "QueueBacklog", "severity": "critical", "service": "orders", "queue": "emails"}, got[0].Labels)
	require.Equal(t, map[string]string{"summary": "Queue emails has 20 items"}, got[0].Annotations)
	require.True(t, got[0].StartsAt.Equal(fired), "startsAt is when it fired")
	require.True(t, got[0].EndsAt.Equal(fired.Add(4*time.Hour)), "endsAt: 4 × max(interval, resend), as Prometheus")

	clock.Add(15 * time.Second)
	h.alerts.Evaluate()
	clock.Add(50 * time.Second)
	h.alerts.Evaluate() // 65s after the first send: a reminder
	require.Eventually(t, func() bool { return len(am.Received()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "QueueBacklog", am.Received()[1][0].Labels["alertname"])

	depth.WithLabelValues("emails").Set(1)
	clock.Add(15 * time.Second)
	resolved := clock.Now()
	h.alerts.Evaluate()
	act = h.activeAlerts()
	require.Equal(t, alert.Resolved, act[0].State)
	require.True(t, act[0].ResolvedAt.Equal(resolved))
	require.Eventually(t, func() bool { return len(am.Received()) == 3 }, 5*time.Second, 10*time.Millisecond)
	last := am.Received()[2][0]
	require.True(t, last.EndsAt.Equal(resolved), "a resolved alert ends when it resolved")

	clock.Add(16 * time.Minute)
	h.alerts.Evaluate()
	require.Empty(t, h.activeAlerts(), "resolved alerts are forgotten after 15m")
	require.Len(t, am.Received(), 3, "nothing more to send")

	require.Eventually(t, func() bool { return h.messages("alert resolved", "alert", "QueueBacklog") == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, h.messages("alert firing", "alert", "QueueBacklog"), "the log notifier logs transitions, not reminders")
}

// blocker is a notifier that does not return until released.
type blocker struct {
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (*blocker) Name() string { return "blocker" }
func (b *blocker) Notify(ctx context.Context, _ []alert.Alert) error {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// panicker is a notifier with a bug.
type panicker struct{}

func (panicker) Name() string                                { return "panicker" }
func (panicker) Notify(context.Context, []alert.Alert) error { panic("nil map") }

func TestNotifiersRetryAndNeverBlockEvaluation(t *testing.T) {
	t.Parallel()
	am := amtest.New(t, http.StatusServiceUnavailable, http.StatusBadGateway)
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicas_up", Help: "Up."})
	slow := &blocker{release: make(chan struct{})}
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=1h", "MARTY_MONITOR_ALERT_RESEND=1s",
		"MARTY_MONITOR_ALERTMANAGER_URL="+am.URL, "MARTY_MONITOR_ALERTMANAGER_RETRIES=3"),
		withClock(clock),
		fxmonitor.AsCollector(up),
		fxmonitor.AsNotifier(slow),
		fxmonitor.AsNotifier(func() alert.Notifier { return panicker{} }),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "NoReplicas", Metric: "replicas_up", Op: fxmonitor.OpLessEqual, Threshold: 0}),
	)
	t.Cleanup(func() { close(slow.release) }) // before the app stops

	h.alerts.Evaluate() // fires at once
	require.Eventually(t, func() bool { return len(am.Received()) == 1 }, 10*time.Second, 10*time.Millisecond,
		"delivered after two failed tries")
	require.Equal(t, 3, am.Attempts())
	require.Equal(t, "NoReplicas", am.Received()[0][0].Labels["alertname"])
	require.Eventually(t, func() bool { return h.messages("alert notification failed", "notifier", "panicker") == 1 },
		5*time.Second, 10*time.Millisecond, "a panicking notifier is a logged failure")

	// The blocked notifier holds one batch; 64 more fill its queue; the rest
	// push the oldest out. Evaluation goes on regardless.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			clock.Add(2 * time.Second)
			h.alerts.Evaluate()
		}
	}()
	require.Eventually(t, func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "evaluation does not wait for a blocked notifier")
	mfs := h.scrape()
	dropped, _ := value(mfs, "marty_alert_notifications_total", map[string]string{"notifier": "blocker", "result": "dropped"})
	require.Greater(t, dropped, 0.0)
	require.Eventually(t, func() bool {
		v, _ := value(h.scrape(), "marty_alert_notifications_total", map[string]string{"notifier": "alertmanager", "result": "sent"})
		return v == 101
	}, 10*time.Second, 10*time.Millisecond, "the Alertmanager notifier is not held up by the blocked one")
}

// ruleFile is the shape of a Prometheus rule file. alert's tests check the
// file in detail; tests/promcompat parses it with Prometheus' own rulefmt
// and PromQL parser.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert  string            `yaml:"alert"`
			Expr   string            `yaml:"expr"`
			For    string            `yaml:"for"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func (h *harness) ruleFile() ruleFile {
	h.t.Helper()
	code, body, hdr := h.get("/alerts/rules.yaml")
	require.Equal(h.t, http.StatusOK, code)
	require.Equal(h.t, "application/yaml; charset=utf-8", hdr.Get("Content-Type"))
	var f ruleFile
	require.NoError(h.t, yaml.Unmarshal([]byte(body), &f), body)
	require.Len(h.t, f.Groups, 1, body)
	return f
}

// /alerts/rules.yaml is the registered rules in one group named after the
// service, evaluated at MARTY_MONITOR_ALERT_INTERVAL.
func TestRuleFileIsServed(t *testing.T) {
	t.Parallel()
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=30s"),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "QueueBacklog", Metric: "queue_depth", Op: fxmonitor.OpGreater,
			Threshold: 10, For: 90 * time.Second, Severity: "critical"}),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "HighErrorRate", Metric: "http_server_request_duration_seconds_count",
			Labels: map[string]string{"code": "500"}, Rate: 5 * time.Minute, Op: fxmonitor.OpGreaterEqual, Threshold: 0.5}),
	)
	g := h.ruleFile().Groups[0]
	require.Equal(t, "orders", g.Name, "named after the service")
	require.Equal(t, "30s", g.Interval)
	require.Len(t, g.Rules, 2)
	exprs := map[string]string{}
	for _, r := range g.Rules {
		exprs[r.Alert] = r.Expr
	}
	require.Equal(t, map[string]string{
		"QueueBacklog":  `queue_depth > 10`,
		"HighErrorRate": `rate(http_server_request_duration_seconds_count{code="500"}[5m]) >= 0.5`,
	}, exprs)
}

func TestBadAlertRulesFailStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		rule fxmonitor.AlertRule
		want string
	}{
		{fxmonitor.AlertRule{Metric: "x", Op: ">"}, `alert rule on "x" needs a Name`},
		{fxmonitor.AlertRule{Name: "Bad name", Metric: "x", Op: ">"}, `alert rule "Bad name": the name must match`},
		{fxmonitor.AlertRule{Name: "A", Metric: "x-y", Op: ">"}, `alert rule "A": invalid metric name "x-y"`},
		{fxmonitor.AlertRule{Name: "A", Metric: "x", Op: "=>"}, `alert rule "A": invalid Op "=>"`},
		{fxmonitor.AlertRule{Name: "A", Metric: "x", Op: ">", Summary: "{{ .Oops"}, `alert rule "A": summary:`},
	} {
		_, err := newApp(t, quiet, fxmonitor.AsAlertRule(tc.rule))
		require.ErrorContains(t, err, tc.want)
	}
	_, err := newApp(t, quiet, fxmonitor.AsNotifier("log"))
	require.ErrorContains(t, err, "fxmonitor.AsNotifier: got string, want an alert.Notifier")
}

func TestStatusz(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicas_up", Help: "Up."})
	h := start(t, []string{"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false",
		"MARTY_SERVICE_VERSION=1.4.2", "MARTY_ENV=staging", "MARTY_MONITOR_ALERT_INTERVAL=1h"},
		withClock(clock),
		fxmonitor.AsCollector(up),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true, Func: func(context.Context) error { return nil }}),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "NoReplicas", Metric: "replicas_up", Op: fxmonitor.OpLessEqual, Threshold: 0}),
	)
	_ = h.breakers.Get("payments").Execute(func() error { return nil })
	code, _, _ := h.get("/readyz")
	require.Equal(t, http.StatusOK, code)
	h.alerts.Evaluate()

	code, body, hdr := h.get("/statusz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "application/json", hdr.Get("Content-Type"))
	var st statusz
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	require.Equal(t, "orders", st.Service.Name)
	require.Equal(t, "1.4.2", st.Service.Version)
	require.Equal(t, "staging", st.Service.Environment)
	require.NotEmpty(t, st.Service.InstanceID)
	require.Equal(t, "ok", st.Probes["readiness"])
	require.Equal(t, "ok", st.Probes["liveness"])
	require.Len(t, st.Checks, 2)
	require.Equal(t, "circuit_breakers", st.Checks[0].Name)
	require.Equal(t, "db", st.Checks[1].Name)
	require.Equal(t, "passing", st.Checks[1].Status)
	require.Len(t, st.Breakers, 1)
	require.Equal(t, "payments", st.Breakers[0].Name)
	require.Equal(t, "closed", st.Breakers[0].State)
	require.EqualValues(t, 1, st.Breakers[0].TotalSuccesses)
	require.Len(t, st.Alerts, 1)
	require.Equal(t, "firing", st.Alerts[0].State)
	require.Equal(t, 3, st.Rules, "NoReplicas and the two built-in rules on failing checks")
	require.Greater(t, st.UptimeSeconds, 0.0)
}

// statusz is the /statusz document as a client reads it.
type statusz struct {
	Service struct {
		Name        string `json:"name"`
		Version     string `json:"version"`
		Environment string `json:"environment"`
		InstanceID  string `json:"instance_id"`
	} `json:"service"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Probes        map[string]string `json:"probes"`
	Checks        []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"checks"`
	Breakers []struct {
		Name           string `json:"name"`
		State          string `json:"state"`
		TotalSuccesses int    `json:"total_successes"`
	} `json:"breakers"`
	Alerts []struct {
		Rule   string            `json:"rule"`
		State  string            `json:"state"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
	Rules int `json:"rules"`
}
