package fxmonitor

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/dashboard"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

// Value groups behind the AsXxx helpers.
const (
	checksGroup     = "martyfx.monitor.checks"
	alertRulesGroup = "martyfx.monitor.alert_rules"
	collectorsGroup = "martyfx.monitor.collectors"
	notifiersGroup  = "martyfx.monitor.notifiers"
	panelsGroup     = "martyfx.monitor.panels"
)

// The registration vocabulary, so that a module registers a check or a rule
// with this package alone: fxmonitor.Check{Kinds: fxmonitor.Readiness} is a
// health.Check, fxmonitor.AlertRule{Op: fxmonitor.OpGreater} an alert.Rule.
type (
	// Check is a health check (see health.Check): AsCheck registers it.
	Check = health.Check
	// Kind is the set of probes a check feeds (see health.Kind).
	Kind = health.Kind
	// AlertRule is an alert rule (see alert.Rule): AsAlertRule registers it.
	AlertRule = alert.Rule
	// Op compares an alert rule's value with its threshold (see alert.Op).
	Op = alert.Op
)

// The probe kinds (health.Startup, health.Liveness, health.Readiness).
const (
	Startup   = health.Startup
	Liveness  = health.Liveness
	Readiness = health.Readiness
)

// The comparison operators of alert rules, as in PromQL (alert.OpGreater...).
const (
	OpGreater      = alert.OpGreater
	OpGreaterEqual = alert.OpGreaterEqual
	OpLess         = alert.OpLess
	OpLessEqual    = alert.OpLessEqual
	OpEqual        = alert.OpEqual
	OpNotEqual     = alert.OpNotEqual
)

// AsCheck registers a health check. ctor returns a Check (its parameters are
// injected by Fx), or is a Check.
func AsCheck(ctor any) fx.Option {
	return fxcore.Group(checksGroup, "fxmonitor.AsCheck", ctor, func(v any) (Check, error) {
		c, ok := v.(Check)
		if !ok {
			return Check{}, fmt.Errorf("got %T, want fxmonitor.Check", v)
		}
		if err := c.Validate(); err != nil {
			return Check{}, err
		}
		return c, nil
	})
}

// AsAlertRule registers an alert rule. ctor returns an AlertRule (its
// parameters are injected by Fx), or is an AlertRule.
func AsAlertRule(ctor any) fx.Option {
	return fxcore.Group(alertRulesGroup, "fxmonitor.AsAlertRule", ctor, func(v any) (AlertRule, error) {
		r, ok := v.(AlertRule)
		if !ok {
			return AlertRule{}, fmt.Errorf("got %T, want fxmonitor.AlertRule", v)
		}
		if err := r.Validate(); err != nil {
			return AlertRule{}, err
		}
		return r, nil
	})
}

// AsCollector registers a Prometheus collector on the app's registry. ctor
// returns a prometheus.Collector, or is one. A collector whose metrics are
// already registered fails the start with an error naming the metric.
func AsCollector(ctor any) fx.Option {
	return fxcore.Group(collectorsGroup, "fxmonitor.AsCollector", ctor, func(v any) (prometheus.Collector, error) {
		c, ok := v.(prometheus.Collector)
		if !ok || c == nil {
			return nil, fmt.Errorf("got %T, want a prometheus.Collector", v)
		}
		return c, nil
	})
}

// AsNotifier registers an alert notifier beside the built-in ones (the log
// notifier, and the Alertmanager notifier when MARTY_MONITOR_ALERTMANAGER_URL
// is set). ctor returns an alert.Notifier, or is one.
func AsNotifier(ctor any) fx.Option {
	return fxcore.Group(notifiersGroup, "fxmonitor.AsNotifier", ctor, func(v any) (alert.Notifier, error) {
		n, ok := v.(alert.Notifier)
		if !ok || n == nil {
			return nil, fmt.Errorf("got %T, want an alert.Notifier", v)
		}
		return n, nil
	})
}

// AsPanel adds a module's panel to the dashboard: figures read from the
// registry, a chart, and rows with an action on the module's own admin
// routes (see dashboard.Panel). ctor returns a dashboard.Panel (its
// parameters are injected by Fx), or is one. fxevents registers the event
// bus' panel this way; fxmonitor knows nothing of it.
func AsPanel(ctor any) fx.Option {
	return fxcore.Group(panelsGroup, "fxmonitor.AsPanel", ctor, func(v any) (dashboard.Panel, error) {
		p, ok := v.(dashboard.Panel)
		if !ok {
			return dashboard.Panel{}, fmt.Errorf("got %T, want a dashboard.Panel", v)
		}
		if err := p.Validate(); err != nil {
			return dashboard.Panel{}, err
		}
		return p, nil
	})
}
