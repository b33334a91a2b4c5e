// Package promcompat checks fxmonitor's output against Prometheus' and
// Alertmanager's own code: the rule file (/alerts/rules.yaml) parses with
// rulefmt and its expressions with the PromQL parser, and the Alertmanager
// notifier's payload validates as Alertmanager's v2 PostableAlerts. Those
// modules are large and only these tests need them, so this is a module of
// its own (like bench/): the library's go.mod stays free of them. fxmonitor's
// own tests check the same output with a local copy of the formats.
package promcompat

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/alert"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRuleFileParsesAsPrometheusRules(t *testing.T) {
	t.Parallel()
	rules := append([]alert.Rule{
		{Name: "QueueBacklog", Metric: "queue_depth", Labels: map[string]string{"queue": `emails "bulk"`},
			Op: alert.OpGreater, Threshold: 10, For: 90 * time.Second, Severity: "critical",
			Summary: "Queue {{ $labels.queue }} has {{ $value }} items", Description: "Check the consumers."},
		{Name: "HighErrorRate", Metric: "http_server_request_duration_seconds_count",
			Labels: map[string]string{"code": "500"}, Rate: 5 * time.Minute, Op: alert.OpGreaterEqual, Threshold: 0.5},
		{Name: "NoReplicas", Metric: "replicas_up", Op: alert.OpLessEqual, Threshold: 0},
	}, fxmonitor.CheckAlertRules(2*time.Minute)...)
	body, err := alert.RuleFile("orders", 30*time.Second, rules)
	require.NoError(t, err)

	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse(body, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	require.Empty(t, errs, string(body))
	require.Len(t, groups.Groups, 1)
	g := groups.Groups[0]
	require.Equal(t, "orders", g.Name)
	require.Equal(t, model.Duration(30*time.Second), g.Interval)
	require.Len(t, g.Rules, 5)
	byName := map[string]rulefmt.Rule{}
	for _, r := range g.Rules {
		byName[r.Alert] = r
	}
	q := byName["QueueBacklog"]
	require.Equal(t, model.Duration(90*time.Second), q.For)
	require.Equal(t, map[string]string{"severity": "critical"}, q.Labels)
	require.Equal(t, "Queue {{ $labels.queue }} has {{ $value }} items", q.Annotations["summary"])
	require.Equal(t, model.Duration(2*time.Minute), byName[fxmonitor.AlertCheckFailing].For)
	for name, want := range map[string]string{
		"QueueBacklog":               `queue_depth{queue="emails \"bulk\""} > 10`,
		"HighErrorRate":              `rate(http_server_request_duration_seconds_count{code="500"}[5m]) >= 0.5`,
		"NoReplicas":                 `replicas_up <= 0`,
		fxmonitor.AlertCheckFailing:  `marty_health_check_failing{critical="true"} == 1`,
		fxmonitor.AlertCheckDegraded: `marty_health_check_failing{critical="false"} == 1`,
	} {
		got, err := p.ParseExpr(byName[name].Expr)
		require.NoError(t, err, name)
		wantExpr, err := p.ParseExpr(want)
		require.NoError(t, err)
		require.Equal(t, wantExpr.String(), got.String(), name)
	}
	require.Equal(t, map[string]string{"severity": "warning"}, byName["NoReplicas"].Labels, "default severity")
}

func TestAlertmanagerPayloadValidates(t *testing.T) {
	t.Parallel()
	n, err := alert.NewAlertmanagerNotifier("http://alertmanager:9093", alert.AlertmanagerOptions{GeneratorURL: "http://orders:9090/alerts"})
	require.NoError(t, err)
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	body, err := n.Payload([]alert.Alert{
		{Rule: "A", Labels: map[string]string{"alertname": "A", "severity": "critical"}, Annotations: map[string]string{"summary": "s"},
			State: alert.Firing, ActiveAt: t0, FiredAt: t0.Add(time.Minute), ValidUntil: t0.Add(time.Hour)},
		{Rule: "B", Labels: map[string]string{"alertname": "B"}, State: alert.Resolved, ActiveAt: t0, FiredAt: t0,
			ResolvedAt: t0.Add(2 * time.Minute)},
	}, t0)
	require.NoError(t, err)
	var alerts models.PostableAlerts
	require.NoError(t, json.Unmarshal(body, &alerts))
	require.NoError(t, alerts.Validate(strfmt.Default))
	require.Len(t, alerts, 2)
	require.Equal(t, models.LabelSet{"alertname": "A", "severity": "critical"}, alerts[0].Labels)
	require.True(t, time.Time(alerts[0].StartsAt).Equal(t0.Add(time.Minute)))
	require.True(t, time.Time(alerts[0].EndsAt).Equal(t0.Add(time.Hour)))
	require.True(t, time.Time(alerts[1].EndsAt).Equal(t0.Add(2*time.Minute)))
	require.Equal(t, strfmt.URI("http://orders:9090/alerts"), alerts[0].GeneratorURL)
}
