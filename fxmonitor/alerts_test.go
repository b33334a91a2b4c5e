package fxmonitor_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxmonitor"
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
	return fx.Supply(fx.Annotate(c, fx.As(new(fxmonitor.Clock))))
}

// alertmanager is an httptest Alertmanager that decodes what it receives
// with Alertmanager's own API models.
type alertmanager struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	posts  []models.PostableAlerts
	tries  int
	status []int // answers to give, in order; 200 after
}

func newAlertmanager(t *testing.T, status ...int) *alertmanager {
	am := &alertmanager{t: t, status: status}
	am.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(r.Body)
		am.mu.Lock()
		defer am.mu.Unlock()
		am.tries++
		if len(am.status) > 0 {
			code := am.status[0]
			am.status = am.status[1:]
			if code != http.StatusOK {
				http.Error(w, "try later", code)
				return
			}
		}
		var alerts models.PostableAlerts
		if err := json.Unmarshal(body, &alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := alerts.Validate(strfmt.Default); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		am.posts = append(am.posts, alerts)
	}))
	t.Cleanup(am.srv.Close) // after the app stops: cleanups run last-in first-out
	return am
}

func (am *alertmanager) received() []models.PostableAlerts {
	am.mu.Lock()
	defer am.mu.Unlock()
	return append([]models.PostableAlerts(nil), am.posts...)
}

func (am *alertmanager) attempts() int {
	am.mu.Lock()
	defer am.mu.Unlock()
	return am.tries
}

func (h *harness) activeAlerts() []fxmonitor.Alert {
	h.t.Helper()
	code, body, hdr := h.get("/alerts")
	require.Equal(h.t, http.StatusOK, code)
	require.Equal(h.t, "application/json", hdr.Get("Content-Type"))
	var doc struct {
		Alerts []fxmonitor.Alert `json:"alerts"`
	}
	require.NoError(h.t, json.Unmarshal([]byte(body), &doc), body)
	return doc.Alerts
}

func TestAlertRuleGoesPendingFiringResolved(t *testing.T) {
	am := newAlertmanager(t)
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "queue_depth", Help: "Items waiting."}, []string{"queue"})
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=1h", "MARTY_MONITOR_ALERTMANAGER_URL="+am.srv.URL),
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
	require.Equal(t, fxmonitor.AlertPending, act[0].State)
	require.Equal(t, "emails", act[0].Labels["queue"])
	require.Equal(t, "QueueBacklog", act[0].Labels["alertname"])
	require.Equal(t, "orders", act[0].Labels["service"])
	require.True(t, act[0].ActiveAt.Equal(t0))
	require.Equal(t, 20.0, act[0].Value)

	clock.Add(30 * time.Second)
	h.alerts.Evaluate()
	require.Equal(t, fxmonitor.AlertPending, h.activeAlerts()[0].State, "pending until For has passed")
	v, _ := value(h.scrape(), "marty_alerts", map[string]string{"alertname": "QueueBacklog", "state": "pending"})
	require.Equal(t, 1.0, v)
	require.Empty(t, am.received(), "pending alerts are not sent")

	clock.Add(31 * time.Second)
	fired := clock.Now()
	h.alerts.Evaluate()
	act = h.activeAlerts()
	require.Equal(t, fxmonitor.AlertFiring, act[0].State)
	require.True(t, act[0].FiredAt.Equal(fired))
	v, _ = value(h.scrape(), "marty_alerts", map[string]string{"alertname": "QueueBacklog", "state": "firing"})
	require.Equal(t, 1.0, v)

	require.Eventually(t, func() bool { return len(am.received()) == 1 }, 5*time.Second, 10*time.Millisecond)
	got := am.received()[0]
	require.Len(t, got, 1)
	require.Equal(t, models.LabelSet{"alertname": "QueueBacklog", "severity": "critical", "service": "orders", "queue": "emails"}, got[0].Labels)
	require.Equal(t, models.LabelSet{"summary": "Queue emails has 20 items"}, got[0].Annotations)
	require.True(t, time.Time(got[0].StartsAt).Equal(fired), "startsAt is when it fired")
	require.True(t, time.Time(got[0].EndsAt).Equal(fired.Add(4*time.Hour)), "endsAt: 4 × max(interval, resend), as Prometheus")

	clock.Add(15 * time.Second)
	h.alerts.Evaluate()
	clock.Add(50 * time.Second)
	h.alerts.Evaluate() // 65s after the first send: a reminder
	require.Eventually(t, func() bool { return len(am.received()) == 2 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "QueueBacklog", am.received()[1][0].Labels["alertname"])

	depth.WithLabelValues("emails").Set(1)
	clock.Add(15 * time.Second)
	resolved := clock.Now()
	h.alerts.Evaluate()
	act = h.activeAlerts()
	require.Equal(t, fxmonitor.AlertResolved, act[0].State)
	require.True(t, act[0].ResolvedAt.Equal(resolved))
	require.Eventually(t, func() bool { return len(am.received()) == 3 }, 5*time.Second, 10*time.Millisecond)
	last := am.received()[2][0]
	require.True(t, time.Time(last.EndsAt).Equal(resolved), "a resolved alert ends when it resolved")

	clock.Add(16 * time.Minute)
	h.alerts.Evaluate()
	require.Empty(t, h.activeAlerts(), "resolved alerts are forgotten after 15m")
	require.Len(t, am.received(), 3, "nothing more to send")

	require.Eventually(t, func() bool { return h.messages("alert resolved", "alert", "QueueBacklog") == 1 }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, h.messages("alert firing", "alert", "QueueBacklog"), "the log notifier logs transitions, not reminders")
}

func TestAlertRuleOnCounterRate(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total", Help: "Errors."}, []string{"route"})
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=1h"),
		withClock(clock),
		fxmonitor.AsCollector(errs),
		fxmonitor.AsAlertRule(func() fxmonitor.AlertRule {
			return fxmonitor.AlertRule{Name: "HighErrorRate", Metric: "http_errors_total", Labels: map[string]string{"route": "/v1/orders"},
				Rate: time.Minute, Op: fxmonitor.OpGreater, Threshold: 1, Summary: "{{ $value }} errors/s"}
		}),
	)
	orders, other := errs.WithLabelValues("/v1/orders"), errs.WithLabelValues("/v1/other")
	h.alerts.Evaluate()
	other.Add(1000)
	orders.Add(30)
	clock.Add(30 * time.Second)
	h.alerts.Evaluate()
	require.Empty(t, h.activeAlerts(), "1 error/s is not above 1")
	orders.Add(90)
	clock.Add(30 * time.Second)
	h.alerts.Evaluate()
	act := h.activeAlerts()
	require.Len(t, act, 1, "only the matching route")
	require.Equal(t, fxmonitor.AlertFiring, act[0].State, "For 0 fires at once")
	require.Equal(t, 2.0, act[0].Value, "120 errors in 60s")
	require.Equal(t, "2 errors/s", act[0].Annotations["summary"])

	clock.Add(60 * time.Second)
	h.alerts.Evaluate()
	require.Equal(t, fxmonitor.AlertResolved, h.activeAlerts()[0].State, "no errors in the last minute")
}

// blocker is a notifier that does not return until released.
type blocker struct {
	release chan struct{}
	mu      sync.Mutex
	calls   int
}

func (*blocker) Name() string { return "blocker" }
func (b *blocker) Notify(ctx context.Context, _ []fxmonitor.Alert) error {
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

func (panicker) Name() string                                    { return "panicker" }
func (panicker) Notify(context.Context, []fxmonitor.Alert) error { panic("nil map") }

func TestNotifiersRetryAndNeverBlockEvaluation(t *testing.T) {
	am := newAlertmanager(t, http.StatusServiceUnavailable, http.StatusBadGateway)
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "replicas_up", Help: "Up."})
	slow := &blocker{release: make(chan struct{})}
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=1h", "MARTY_MONITOR_ALERT_RESEND=1s",
		"MARTY_MONITOR_ALERTMANAGER_URL="+am.srv.URL, "MARTY_MONITOR_ALERTMANAGER_RETRIES=3"),
		withClock(clock),
		fxmonitor.AsCollector(up),
		fxmonitor.AsNotifier(slow),
		fxmonitor.AsNotifier(func() fxmonitor.Notifier { return panicker{} }),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "NoReplicas", Metric: "replicas_up", Op: fxmonitor.OpLessEqual, Threshold: 0}),
	)
	t.Cleanup(func() { close(slow.release) }) // before the app stops

	h.alerts.Evaluate() // fires at once
	require.Eventually(t, func() bool { return len(am.received()) == 1 }, 10*time.Second, 10*time.Millisecond,
		"delivered after two failed tries")
	require.Equal(t, 3, am.attempts())
	require.Equal(t, "NoReplicas", am.received()[0][0].Labels["alertname"])
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

func TestAlertmanagerClientErrorsAreNotRetried(t *testing.T) {
	am := newAlertmanager(t, http.StatusBadRequest)
	n, err := fxmonitor.NewAlertmanagerNotifier(am.srv.URL, fxmonitor.AlertmanagerOptions{Retries: 3, Backoff: time.Millisecond})
	require.NoError(t, err)
	err = n.Notify(context.Background(), []fxmonitor.Alert{{Rule: "X", Labels: map[string]string{"alertname": "X"},
		State: fxmonitor.AlertFiring, ActiveAt: time.Now(), FiredAt: time.Now()}})
	require.ErrorContains(t, err, "fxmonitor: post alerts to "+am.srv.URL+"/api/v2/alerts: status 400 Bad Request: try later")
	require.Equal(t, 1, am.attempts())

	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	n, err = fxmonitor.NewAlertmanagerNotifier("http://user:secret@"+url[len("http://"):], fxmonitor.AlertmanagerOptions{Retries: 1, Backoff: time.Millisecond})
	require.NoError(t, err)
	err = n.Notify(context.Background(), []fxmonitor.Alert{{Rule: "X", Labels: map[string]string{"alertname": "X"}, State: fxmonitor.AlertFiring}})
	require.ErrorContains(t, err, "connection refused")
	require.NotContains(t, err.Error(), "secret", "credentials never reach errors")

	_, err = fxmonitor.NewAlertmanagerNotifier("am:9093", fxmonitor.AlertmanagerOptions{})
	require.ErrorContains(t, err, "want an http(s) URL")
}

func TestRuleFileParsesAsPrometheusRules(t *testing.T) {
	h := start(t, append(quiet, "MARTY_MONITOR_ALERT_INTERVAL=30s"),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "QueueBacklog", Metric: "queue_depth", Labels: map[string]string{"queue": `emails "bulk"`},
			Op: fxmonitor.OpGreater, Threshold: 10, For: 90 * time.Second, Severity: "critical",
			Summary: "Queue {{ $labels.queue }} has {{ $value }} items", Description: "Check the consumers."}),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "HighErrorRate", Metric: "http_server_request_duration_seconds_count",
			Labels: map[string]string{"code": "500"}, Rate: 5 * time.Minute, Op: fxmonitor.OpGreaterEqual, Threshold: 0.5}),
		fxmonitor.AsAlertRule(fxmonitor.AlertRule{Name: "NoReplicas", Metric: "replicas_up", Op: fxmonitor.OpLessEqual, Threshold: 0}),
	)
	code, body, hdr := h.get("/alerts/rules.yaml")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "application/yaml; charset=utf-8", hdr.Get("Content-Type"))

	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse([]byte(body), false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	require.Empty(t, errs, body)
	require.Len(t, groups.Groups, 1)
	g := groups.Groups[0]
	require.Equal(t, "orders", g.Name, "named after the service")
	require.Equal(t, model.Duration(30*time.Second), g.Interval)
	require.Len(t, g.Rules, 3)
	byName := map[string]rulefmt.Rule{}
	for _, r := range g.Rules {
		byName[r.Alert] = r
	}
	q := byName["QueueBacklog"]
	require.Equal(t, model.Duration(90*time.Second), q.For)
	require.Equal(t, map[string]string{"severity": "critical"}, q.Labels)
	require.Equal(t, "Queue {{ $labels.queue }} has {{ $value }} items", q.Annotations["summary"])
	require.Equal(t, "Check the consumers.", q.Annotations["description"])
	want := map[string]string{
		"QueueBacklog":  `queue_depth{queue="emails \"bulk\""} > 10`,
		"HighErrorRate": `rate(http_server_request_duration_seconds_count{code="500"}[5m]) >= 0.5`,
		"NoReplicas":    `replicas_up <= 0`,
	}
	for name, expr := range want {
		got, err := p.ParseExpr(byName[name].Expr)
		require.NoError(t, err, name)
		wantExpr, err := p.ParseExpr(expr)
		require.NoError(t, err)
		require.Equal(t, wantExpr.String(), got.String(), name)
	}
	require.Equal(t, map[string]string{"severity": "warning"}, byName["NoReplicas"].Labels, "default severity")
}

func TestBadAlertRulesFailStart(t *testing.T) {
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
	require.ErrorContains(t, err, "fxmonitor.AsNotifier: got string, want an fxmonitor.Notifier")
}

func TestStatusz(t *testing.T) {
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
	var st fxmonitor.Statusz
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	require.Equal(t, "orders", st.Service.Name)
	require.Equal(t, "1.4.2", st.Service.Version)
	require.Equal(t, "staging", st.Service.Environment)
	require.NotEmpty(t, st.Service.InstanceID)
	require.Equal(t, fxmonitor.VerdictOK, st.Probes["readiness"])
	require.Equal(t, fxmonitor.VerdictOK, st.Probes["liveness"])
	require.Len(t, st.Checks, 2)
	require.Equal(t, "circuit_breakers", st.Checks[0].Name)
	require.Equal(t, "db", st.Checks[1].Name)
	require.Equal(t, fxmonitor.CheckPassing, st.Checks[1].Status)
	require.Len(t, st.Breakers, 1)
	require.Equal(t, "payments", st.Breakers[0].Name)
	require.Equal(t, "closed", st.Breakers[0].State)
	require.EqualValues(t, 1, st.Breakers[0].TotalSuccesses)
	require.Len(t, st.Alerts, 1)
	require.Equal(t, fxmonitor.AlertFiring, st.Alerts[0].State)
	require.Equal(t, 3, st.Rules, "NoReplicas and the two built-in rules on failing checks")
	require.Greater(t, st.UptimeSeconds, 0.0)
}
