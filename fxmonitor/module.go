package fxmonitor

import (
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxmonitor/dashboard"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

// Module provides *health.Health, *breaker.Breakers and *alert.Evaluator;
// registers the checks, collectors, alert rules, notifiers and dashboard
// panels given with AsCheck, AsCollector, AsAlertRule, AsNotifier and
// AsPanel; samples the marty_system_* gauges; and serves on the admin
// server (fxhttp.Module):
//
//	/livez /readyz /startupz   probes (plain text; ?verbose for JSON)     open
//	/metrics                   Prometheus / OpenMetrics                    open
//	/alerts                    pending, firing and resolved alerts (JSON)  protected
//	/alerts/rules.yaml         the alert rules as a Prometheus rule file   protected
//	/statusz                   service, checks, breakers and alerts (JSON) protected
//	/dashboard/                the operations dashboard (MARTY_MONITOR_DASHBOARD) protected
//
// Open routes never need the admin token; protected ones need
// MARTY_HTTP_ADMIN_TOKEN when it is set and, in production, are not served
// without it (see fxhttp.AsAdminRoute).
//
// An alert.Clock in the graph (optional) drives alert evaluation.
var Module = fx.Module("martyfx.monitor",
	fx.Provide(
		fxcore.ProvideConfig[Config]("monitor", DefaultConfig),
		newHealth,
		newBreakers,
		newAlerts,
		newDashboard,
	),
	fx.Invoke(registerCollectors, startSystemMetrics, func(*health.Health, *breaker.Breakers, *alert.Evaluator) {}),
	// Probes and metrics are open (read-only, no payloads): kubelet and
	// Prometheus need no credentials. The rest shows status detail:
	// protected by MARTY_HTTP_ADMIN_TOKEN, and not served in production
	// without it.
	fxhttp.AsAdminRoute("GET /livez", func(h *health.Health) http.Handler { return h.ProbeHandler(Liveness) }, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /readyz", func(h *health.Health) http.Handler { return h.ProbeHandler(Readiness) }, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /startupz", func(h *health.Health) http.Handler { return h.ProbeHandler(Startup) }, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /metrics", MetricsHandler, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /alerts", func(a *alert.Evaluator) http.Handler { return a.Handler() }),
	fxhttp.AsAdminRoute("GET /alerts/rules.yaml", func(a *alert.Evaluator, info fxcore.ServiceInfo) http.Handler {
		return a.RulesHandler(info.Name)
	}),
	fxhttp.AsAdminRoute("GET /statusz", newStatusPage),
	fxhttp.AsAdminRoute(dashboard.Path+"/", dashboardRoute),
	fxhttp.AsAdminRoute("GET "+dashboard.Path, dashboardRoute),
)

type healthIn struct {
	fx.In
	Config    Config
	Checks    []Check `group:"martyfx.monitor.checks"`
	Registry  prometheus.Registerer
	Log       *zap.Logger
	Stopping  *fxcore.Stopping
	Breakers  *breaker.Breakers
	Lifecycle fx.Lifecycle
}

func newHealth(in healthIn) (*health.Health, error) {
	checks := append([]Check{}, in.Checks...)
	checks = append(checks, builtinChecks(in.Config, in.Breakers)...)
	h, err := health.New(checks, health.Options{
		Timeout:       in.Config.CheckTimeout,
		TTL:           in.Config.CheckTTL,
		WatchInterval: in.Config.WatchInterval,
		Critical:      in.Config.criticalOverrides(),
		Registerer:    in.Registry,
		Logger:        in.Log.Named("health"),
		Stopping:      in.Stopping,
	})
	if err != nil {
		return nil, err
	}
	in.Lifecycle.Append(fx.Hook{OnStart: h.Start, OnStop: h.Stop})
	return h, nil
}

func newBreakers(cfg Config, reg prometheus.Registerer, log *zap.Logger) (*breaker.Breakers, error) {
	return breaker.New(cfg.breakers(), breaker.Options{Registerer: reg, Logger: log.Named("breaker")})
}

type alertsIn struct {
	fx.In
	Config    Config
	Info      fxcore.ServiceInfo
	Rules     []AlertRule `group:"martyfx.monitor.alert_rules"`
	Health    *health.Health
	Notifiers []alert.Notifier `group:"martyfx.monitor.notifiers"`
	Clock     alert.Clock      `optional:"true"`
	Gatherer  prometheus.Gatherer
	Registry  prometheus.Registerer
	Log       *zap.Logger
	Lifecycle fx.Lifecycle
}

func newAlerts(in alertsIn) (*alert.Evaluator, error) {
	log := in.Log.Named("alerts")
	var notifiers []alert.Notifier
	if in.Config.LogAlerts {
		notifiers = append(notifiers, alert.NewLogNotifier(log))
	}
	if in.Config.AlertmanagerURL != "" {
		am, err := alert.NewAlertmanagerNotifier(in.Config.AlertmanagerURL, alert.AlertmanagerOptions{
			Timeout: in.Config.AlertmanagerTimeout,
			Retries: in.Config.AlertmanagerRetries,
		})
		if err != nil {
			return nil, err
		}
		notifiers = append(notifiers, am)
	}
	notifiers = append(notifiers, in.Notifiers...)
	rules := in.Rules
	if in.Config.CheckAlerts && len(in.Health.Results()) > 0 {
		rules = append(slices.Clone(rules), CheckAlertRules(in.Config.CheckAlertFor)...)
	}
	a, err := alert.New(rules, in.Gatherer, alert.Options{
		Interval:   in.Config.AlertInterval,
		Resend:     in.Config.AlertResend,
		Clock:      in.Clock,
		Notifiers:  notifiers,
		Labels:     map[string]string{"service": in.Info.Name},
		Registerer: in.Registry,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	in.Lifecycle.Append(fx.Hook{OnStart: a.Start, OnStop: a.Stop})
	return a, nil
}

type collectorsIn struct {
	fx.In
	Collectors []prometheus.Collector `group:"martyfx.monitor.collectors"`
	Registry   prometheus.Registerer
}

func registerCollectors(in collectorsIn) error {
	for _, c := range in.Collectors {
		if err := RegisterCollector(in.Registry, c); err != nil {
			return err
		}
	}
	return nil
}

func startSystemMetrics(cfg Config, reg prometheus.Registerer, log *zap.Logger, lc fx.Lifecycle) error {
	if !cfg.System.Enabled {
		return nil
	}
	s, err := NewSystemMetrics(cfg, SystemOptions{Registerer: reg, Logger: log.Named("system")})
	if err != nil {
		return err
	}
	lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	return nil
}

type dashboardIn struct {
	fx.In
	Config    Config
	Info      fxcore.ServiceInfo
	Health    *health.Health
	Breakers  *breaker.Breakers
	Alerts    *alert.Evaluator
	Panels    []dashboard.Panel `group:"martyfx.monitor.panels"`
	Gatherer  prometheus.Gatherer
	Graph     fx.DotGraph `optional:"true"`
	Log       *zap.Logger
	Stopping  *fxcore.Stopping
	Lifecycle fx.Lifecycle
}

// newDashboard builds the dashboard; nil when MARTY_MONITOR_DASHBOARD=false.
func newDashboard(in dashboardIn) (*dashboard.Dashboard, error) {
	if !in.Config.Dashboard {
		return nil, nil
	}
	d, err := dashboard.New(dashboard.Options{
		Info: in.Info, Health: in.Health, Breakers: in.Breakers, Alerts: in.Alerts, Gatherer: in.Gatherer,
		Graph: string(in.Graph), Interval: in.Config.DashboardInterval, Window: in.Config.DashboardWindow,
		Panels: in.Panels, Logger: in.Log.Named("dashboard"), Stopping: in.Stopping,
	})
	if err != nil {
		return nil, err
	}
	in.Lifecycle.Append(fx.Hook{OnStart: d.Start, OnStop: d.Stop})
	return d, nil
}

func dashboardRoute(d *dashboard.Dashboard) http.Handler {
	if d == nil {
		return http.NotFoundHandler()
	}
	return d
}
