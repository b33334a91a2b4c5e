package fxmonitor

import (
	"context"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// Module provides *Health, *Breakers and *Alerts, registers the collectors,
// checks, alert rules and notifiers given with the AsXxx helpers, and serves
// /livez, /readyz, /startupz, /metrics, /alerts, /alerts/rules.yaml and
// /statusz on the admin server (fxhttp.Module).
var Module = fx.Module("martyfx.monitor",
	fx.Provide(
		fxcore.ProvideConfig[Config]("monitor", DefaultConfig),
		newHealth,
		newBreakers,
	),
	fx.Invoke(registerCollectors, func(*Health, *Breakers) {}),
	fxhttp.AsAdminRoute("GET /livez", func(h *Health) http.Handler { return h.ProbeHandler(Liveness) }),
	fxhttp.AsAdminRoute("GET /readyz", func(h *Health) http.Handler { return h.ProbeHandler(Readiness) }),
	fxhttp.AsAdminRoute("GET /startupz", func(h *Health) http.Handler { return h.ProbeHandler(Startup) }),
	fxhttp.AsAdminRoute("GET /metrics", MetricsHandler),
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
		Timeout:    p.Config.CheckTimeout,
		TTL:        p.Config.CheckTTL,
		Registerer: p.Registry,
		Logger:     p.Log.Named("health"),
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
