package fxmonitor

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
)

// Value groups behind the AsXxx helpers.
const (
	checksGroup     = "martyfx.monitor.checks"
	alertRulesGroup = "martyfx.monitor.alert_rules"
	collectorsGroup = "martyfx.monitor.collectors"
	notifiersGroup  = "martyfx.monitor.notifiers"
)

// Kind says which probes a check feeds; a check may feed several.
type Kind uint8

// The probe kinds.
const (
	Startup Kind = 1 << iota
	Liveness
	Readiness
)

// Check is a health check.
type Check struct {
	// Name is unique in the app and labels the check's metrics.
	Name string
	// Kinds is the set of probes the check feeds (Startup|Readiness...).
	Kinds Kind
	// Critical failures turn the probe 503; others report degraded with 200.
	Critical bool
	// Timeout fails a check that hangs (default 2s).
	Timeout time.Duration
	// Interval runs the check in the background; 0 runs it on request.
	Interval time.Duration
	// FailureThreshold is how many consecutive failures flip it to failing (default 1).
	FailureThreshold int
	// Func returns nil when healthy.
	Func func(ctx context.Context) error
}

// AsCheck registers a health check. ctor returns a Check (its parameters are
// injected by Fx), or is a Check.
func AsCheck(ctor any) fx.Option {
	return fxcore.Group(checksGroup, "fxmonitor.AsCheck", ctor, func(v any) (Check, error) {
		c, ok := v.(Check)
		if !ok {
			return Check{}, fmt.Errorf("got %T, want fxmonitor.Check", v)
		}
		if c.Name == "" || c.Func == nil || c.Kinds == 0 {
			return Check{}, fmt.Errorf("check %q needs a Name, Kinds and a Func", c.Name)
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
		if err := r.validate(); err != nil {
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

// AsNotifier registers an alert Notifier beside the built-in ones (the log
// notifier, and the Alertmanager notifier when MARTY_MONITOR_ALERTMANAGER_URL
// is set). ctor returns a Notifier, or is one.
func AsNotifier(ctor any) fx.Option {
	return fxcore.Group(notifiersGroup, "fxmonitor.AsNotifier", ctor, func(v any) (Notifier, error) {
		n, ok := v.(Notifier)
		if !ok || n == nil {
			return nil, fmt.Errorf("got %T, want an fxmonitor.Notifier", v)
		}
		return n, nil
	})
}
