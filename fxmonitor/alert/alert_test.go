package alert_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"

	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/internal/amtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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

func TestRuleOnCounterRate(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_errors_total", Help: "Errors."}, []string{"route"})
	reg.MustRegister(errs)
	ev, err := alert.New([]alert.Rule{{Name: "HighErrorRate", Metric: "http_errors_total",
		Labels: map[string]string{"route": "/v1/orders"}, Rate: time.Minute, Op: alert.OpGreater, Threshold: 1,
		Summary: "{{ $value }} errors/s"}}, reg, alert.Options{Clock: clock})
	require.NoError(t, err)
	orders, other := errs.WithLabelValues("/v1/orders"), errs.WithLabelValues("/v1/other")
	ev.Evaluate()
	other.Add(1000)
	orders.Add(30)
	clock.Add(30 * time.Second)
	ev.Evaluate()
	require.Empty(t, ev.Active(), "1 error/s is not above 1")
	orders.Add(90)
	clock.Add(30 * time.Second)
	ev.Evaluate()
	act := ev.Active()
	require.Len(t, act, 1, "only the matching route")
	require.Equal(t, alert.Firing, act[0].State, "For 0 fires at once")
	require.Equal(t, 2.0, act[0].Value, "120 errors in 60s")
	require.Equal(t, "2 errors/s", act[0].Annotations["summary"])
	require.Equal(t, "warning", act[0].Labels["severity"], "the default severity")

	clock.Add(60 * time.Second)
	ev.Evaluate()
	require.Equal(t, alert.Resolved, ev.Active()[0].State, "no errors in the last minute")
}

func TestInvalidRulesAreRefused(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	for _, tc := range []struct {
		rule alert.Rule
		want string
	}{
		{alert.Rule{Metric: "x", Op: ">"}, `alert rule on "x" needs a Name`},
		{alert.Rule{Name: "Bad name", Metric: "x", Op: ">"}, `alert rule "Bad name": the name must match`},
		{alert.Rule{Name: "A", Metric: "x-y", Op: ">"}, `alert rule "A": invalid metric name "x-y"`},
		{alert.Rule{Name: "A", Metric: "x", Op: "=>"}, `alert rule "A": invalid Op "=>"`},
		{alert.Rule{Name: "A", Metric: "x", Op: ">", For: -time.Second}, `alert rule "A": negative For or Rate`},
		{alert.Rule{Name: "A", Metric: "x", Op: ">", Labels: map[string]string{"a-b": "c"}}, `alert rule "A": invalid label name "a-b"`},
		{alert.Rule{Name: "A", Metric: "x", Op: ">", Summary: "{{ .Oops"}, `alert rule "A": summary:`},
	} {
		_, err := alert.New([]alert.Rule{tc.rule}, reg, alert.Options{})
		require.ErrorContains(t, err, "fxmonitor: "+tc.want)
	}
	_, err := alert.New(nil, nil, alert.Options{})
	require.ErrorContains(t, err, "fxmonitor: alert rules need a prometheus.Gatherer")
}

func TestAlertmanagerClientErrorsAreNotRetried(t *testing.T) {
	t.Parallel()
	am := amtest.New(t, http.StatusBadRequest)
	n, err := alert.NewAlertmanagerNotifier(am.URL, alert.AlertmanagerOptions{Retries: 3, Backoff: time.Millisecond})
	require.NoError(t, err)
	err = n.Notify(context.Background(), []alert.Alert{{Rule: "X", Labels: map[string]string{"alertname": "X"},
		State: alert.Firing, ActiveAt: time.Now(), FiredAt: time.Now()}})
	require.ErrorContains(t, err, "fxmonitor: post alerts to "+am.URL+"/api/v2/alerts: status 400 Bad Request: try later")
	require.Equal(t, 1, am.Attempts())

	down := httptest.NewServer(http.NotFoundHandler())
	url := down.URL
	down.Close()
	n, err = alert.NewAlertmanagerNotifier("http://user:secret@"+url[len("http://"):], alert.AlertmanagerOptions{Retries: 1, Backoff: time.Millisecond})
	require.NoError(t, err)
	err = n.Notify(context.Background(), []alert.Alert{{Rule: "X", Labels: map[string]string{"alertname": "X"}, State: alert.Firing}})
	require.ErrorContains(t, err, "connection refused")
	require.NotContains(t, err.Error(), "secret", "credentials never reach errors")

	_, err = alert.NewAlertmanagerNotifier("am:9093", alert.AlertmanagerOptions{})
	require.ErrorContains(t, err, "want an http(s) URL")
}

// The payload is what Alertmanager's v2 API accepts: firing alerts end at
// their ValidUntil, resolved ones when they resolved; pending ones are not
// sent.
func TestAlertmanagerPayload(t *testing.T) {
	t.Parallel()
	n, err := alert.NewAlertmanagerNotifier("http://am:9093", alert.AlertmanagerOptions{GeneratorURL: "http://orders/alerts"})
	require.NoError(t, err)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	body, err := n.Payload([]alert.Alert{
		{Rule: "A", Labels: map[string]string{"alertname": "A"}, Annotations: map[string]string{"summary": "s"},
			State: alert.Firing, ActiveAt: t0, FiredAt: t0.Add(time.Minute), ValidUntil: t0.Add(time.Hour)},
		{Rule: "B", Labels: map[string]string{"alertname": "B"}, State: alert.Resolved, ActiveAt: t0, FiredAt: t0,
			ResolvedAt: t0.Add(2 * time.Minute)},
		{Rule: "C", Labels: map[string]string{"alertname": "C"}, State: alert.Pending, ActiveAt: t0},
	}, t0.Add(3*time.Minute))
	require.NoError(t, err)
	got, err := amtest.Decode(body)
	require.NoError(t, err, string(body))
	require.Len(t, got, 2, "pending alerts are not sent")
	require.Equal(t, amtest.Alert{Labels: map[string]string{"alertname": "A"}, Annotations: map[string]string{"summary": "s"},
		StartsAt: t0.Add(time.Minute), EndsAt: t0.Add(time.Hour), GeneratorURL: "http://orders/alerts"}, got[0])
	require.True(t, got[1].EndsAt.Equal(t0.Add(2*time.Minute)), "a resolved alert ends when it resolved")
}

// ruleFile is the shape of a Prometheus rule file; tests/promcompat
// parses the same output with Prometheus' own rulefmt and PromQL parser.
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestRuleFile(t *testing.T) {
	t.Parallel()
	out, err := alert.RuleFile("orders", 30*time.Second, []alert.Rule{
		{Name: "QueueBacklog", Metric: "queue_depth", Labels: map[string]string{"queue": `emails "bulk"`},
			Op: alert.OpGreater, Threshold: 10, For: 90 * time.Second, Severity: "critical",
			Summary: "Queue {{ $labels.queue }} has {{ $value }} items", Description: "Check the consumers."},
		{Name: "HighErrorRate", Metric: "http_server_request_duration_seconds_count",
			Labels: map[string]string{"code": "500", "method": "GET"}, Rate: 5 * time.Minute, Op: alert.OpGreaterEqual, Threshold: 0.5},
		{Name: "NoReplicas", Metric: "replicas_up", Op: alert.OpLessEqual, Threshold: 0},
	})
	require.NoError(t, err)
	var f ruleFile
	require.NoError(t, yaml.Unmarshal(out, &f), string(out))
	require.Len(t, f.Groups, 1)
	g := f.Groups[0]
	require.Equal(t, "orders", g.Name)
	require.Equal(t, "30s", g.Interval)
	require.Len(t, g.Rules, 3)
	q := g.Rules[0]
	require.Equal(t, "QueueBacklog", q.Alert)
	require.Equal(t, `queue_depth{queue="emails \"bulk\""} > 10`, q.Expr)
	require.Equal(t, "1m30s", q.For)
	require.Equal(t, map[string]string{"severity": "critical"}, q.Labels)
	require.Equal(t, map[string]string{"summary": "Queue {{ $labels.queue }} has {{ $value }} items",
		"description": "Check the consumers."}, q.Annotations)
	require.Equal(t, `rate(http_server_request_duration_seconds_count{code="500",method="GET"}[5m]) >= 0.5`, g.Rules[1].Expr)
	require.Equal(t, `replicas_up <= 0`, g.Rules[2].Expr)
	require.Empty(t, g.Rules[2].For)
	require.Equal(t, map[string]string{"severity": "warning"}, g.Rules[2].Labels, "default severity")
}
