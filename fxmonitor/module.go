package fxmonitor

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// Module provides *Health, *Breakers and *Alerts; registers the checks,
// collectors, alert rules and notifiers given with AsCheck, AsCollector,
// AsAlertRule and AsNotifier; samples the marty_system_* gauges; and serves
// on the admin server (fxhttp.Module):
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
// A fxmonitor.Clock in the graph (optional) drives alert evaluation.
var Module = fx.Module("martyfx.monitor",
	fx.Provide(
		fxcore.ProvideConfig[Config]("monitor", DefaultConfig),
		newHealth,
		newBreakers,
		newAlerts,
		newDashboard,
	),
	fx.Invoke(registerCollectors, startSystemMetrics, func(*Health, *Breakers, *Alerts) {}),
	// Probes and metrics are open (read-only, no payloads): kubelet and
	// Prometheus need no credentials. The rest shows status detail or
	// re-drives dead letters: protected by MARTY_HTTP_ADMIN_TOKEN, and not
	// served in production without it.
	fxhttp.AsAdminRoute("GET /livez", func(h *Health) http.Handler { return h.ProbeHandler(Liveness) }, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /readyz", func(h *Health) http.Handler { return h.ProbeHandler(Readiness) }, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /startupz", func(h *Health) http.Handler { return h.ProbeHandler(Startup) }, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /metrics", MetricsHandler, fxhttp.Open()),
	fxhttp.AsAdminRoute("GET /alerts", func(a *Alerts) http.Handler { return a.AlertsHandler() }),
	fxhttp.AsAdminRoute("GET /alerts/rules.yaml", func(a *Alerts, info fxcore.ServiceInfo) http.Handler {
		return a.RulesHandler(info.Name)
	}),
	fxhttp.AsAdminRoute("GET /statusz", newStatusPage),
	fxhttp.AsAdminRoute(DashboardPath+"/", dashboardRoute),
	fxhttp.AsAdminRoute("GET "+DashboardPath, dashboardRoute),
	fx.Invoke(useAdminRoutes),
)

type healthParams struct {
	fx.In
	Config    Config
	Checks    []Check `group:"martyfx.monitor.checks"`
	Registry  prometheus.Registerer
	Log       *zap.Logger
	Stopping  *fxcore.Stopping
	Breakers  *Breakers
	Lifecycle fx.Lifecycle
}

func newHealth(p healthParams) (*Health, error) {
	checks := append([]Check{}, p.Checks...)
	checks = append(checks, builtinChecks(p.Config, p.Breakers)...)
	h, err := NewHealth(checks, HealthOptions{
		Timeout:       p.Config.CheckTimeout,
		TTL:           p.Config.CheckTTL,
		WatchInterval: p.Config.WatchInterval,
		Critical:      p.Config.CriticalOverrides(),
		Registerer:    p.Registry,
		Logger:        p.Log.Named("health"),
	})
	if err != nil {
		return nil, err
	}
	p.Stopping.OnBegin(h.BeginShutdown)
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { h.Start(); return nil },
		OnStop:  h.Stop,
	})
	return h, nil
}

func newBreakers(cfg Config, reg prometheus.Registerer, log *zap.Logger) *Breakers {
	return NewBreakers(cfg.BreakersConfig(), reg, log.Named("breaker"))
}

type alertsParams struct {
	fx.In
	Config    Config
	Info      fxcore.ServiceInfo
	Rules     []AlertRule `group:"martyfx.monitor.alert_rules"`
	Health    *Health
	Notifiers []Notifier `group:"martyfx.monitor.notifiers"`
	Clock     Clock      `optional:"true"`
	Gatherer  prometheus.Gatherer
	Registry  prometheus.Registerer
	Log       *zap.Logger
	Lifecycle fx.Lifecycle
}

func newAlerts(p alertsParams) (*Alerts, error) {
	log := p.Log.Named("alerts")
	var notifiers []Notifier
	if p.Config.LogAlerts {
		notifiers = append(notifiers, NewLogNotifier(log))
	}
	if p.Config.AlertmanagerURL != "" {
		am, err := NewAlertmanagerNotifier(p.Config.AlertmanagerURL, AlertmanagerOptions{
			Timeout: p.Config.AlertmanagerTimeout,
			Retries: p.Config.AlertmanagerRetries,
		})
		if err != nil {
			return nil, err
		}
		notifiers = append(notifiers, am)
	}
	notifiers = append(notifiers, p.Notifiers...)
	rules := p.Rules
	if p.Config.CheckAlerts && len(p.Health.checks) > 0 {
		rules = append(slices.Clone(rules), CheckAlertRules(p.Config.CheckAlertFor)...)
	}
	a, err := NewAlerts(rules, p.Gatherer, AlertsOptions{
		Interval:   p.Config.AlertInterval,
		Resend:     p.Config.AlertResend,
		Clock:      p.Clock,
		Notifiers:  notifiers,
		Labels:     map[string]string{"service": p.Info.Name},
		Registerer: p.Registry,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { a.Start(); return nil },
		OnStop:  a.Stop,
	})
	return a, nil
}

func startSystemMetrics(cfg Config, reg prometheus.Registerer, log *zap.Logger, lc fx.Lifecycle) error {
	if !cfg.System.Enabled {
		return nil
	}
	path := cfg.Disk.Path
	if path == "" {
		path = "."
	}
	s, err := NewSystemMetrics(reg, path, cfg.System.Interval, log.Named("system"))
	if err != nil {
		return err
	}
	lc.Append(fx.Hook{
		OnStart: func(ctx context.Context) error { s.Start(ctx); return nil },
		OnStop:  s.Stop,
	})
	return nil
}

func newStatusPage(info fxcore.ServiceInfo, h *Health, b *Breakers, a *Alerts) http.Handler {
	return &StatusPage{Info: info, Health: h, Breakers: b, Alerts: a, Started: time.Now()}
}

type dashboardParams struct {
	fx.In
	Config    Config
	Info      fxcore.ServiceInfo
	Health    *Health
	Breakers  *Breakers
	Alerts    *Alerts
	Gatherer  prometheus.Gatherer
	Graph     fx.DotGraph `optional:"true"`
	Log       *zap.Logger
	Stopping  *fxcore.Stopping
	Lifecycle fx.Lifecycle
}

// newDashboard builds the dashboard; nil when MARTY_MONITOR_DASHBOARD=false.
func newDashboard(p dashboardParams) *Dashboard {
	if !p.Config.Dashboard {
		return nil
	}
	d := NewDashboard(DashboardOptions{
		Info: p.Info, Health: p.Health, Breakers: p.Breakers, Alerts: p.Alerts, Gatherer: p.Gatherer,
		Graph: string(p.Graph), Interval: p.Config.DashboardInterval, Window: p.Config.DashboardWindow,
		Logger: p.Log.Named("dashboard"),
	})
	p.Stopping.OnBegin(d.Close)
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(context.Context) error { d.Start(); return nil },
		OnStop:  d.Stop,
	})
	return d
}

func dashboardRoute(d *Dashboard) http.Handler {
	if d == nil {
		return http.NotFoundHandler()
	}
	return d
}

type adminRoutesIn struct {
	fx.In
	Dashboard *Dashboard
	Routes    []fxhttp.Route `group:"martyfx.http.admin_routes"`
}

func useAdminRoutes(in adminRoutesIn) {
	if in.Dashboard != nil {
		in.Dashboard.UseAdminRoutes(in.Routes)
	}
}
