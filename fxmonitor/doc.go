// Package fxmonitor is martyfx's monitoring module. It wires five focused
// packages into one Fx module and serves them on the admin server:
//
//   - health: health checks served as Kubernetes probes (/livez, /readyz,
//     /startupz);
//   - fxmonitor itself: Prometheus metrics (/metrics, collectors registered
//     with AsCollector, gopsutil system gauges) and /statusz;
//   - breaker: named circuit breakers;
//   - alert: alert rules evaluated in-process with Prometheus' semantics,
//     sent to notifiers (logs, Alertmanager) and exported as a Prometheus
//     rule file;
//   - dashboard: the operations dashboard at /dashboard/ (checks, RED per
//     route and method, breakers, alerts, the Fx graph, and the panels
//     other modules add with AsPanel, such as fxevents' event bus).
//
// Add Module (with fxcore.Module and fxhttp.Module for the admin server) and
// register checks, collectors, rules, notifiers and panels with AsCheck,
// AsCollector, AsAlertRule, AsNotifier and AsPanel:
//
//	fx.New(fxcore.Module, fxhttp.Module, fxmonitor.Module,
//		fxmonitor.AsCheck(func(db *sql.DB) fxmonitor.Check {
//			return fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true,
//				Func: db.PingContext}
//		}),
//	)
//
// Check and Kind (with Startup, Liveness, Readiness) are the health
// package's, AlertRule and Op (with OpGreater...) the alert package's,
// under the names a registration reads best with.
//
// A critical check that fails turns its probes 503; a non-critical one
// reports "degraded" with 200 and raises the MartyHealthCheckDegraded alert.
// MARTY_MONITOR_CHECKS_<NAME>_CRITICAL overrides a check's choice.
//
// Other modules read *health.Health (Healthy, OnChange) and
// *breaker.Breakers (Get) from the graph.
//
// # Without Fx
//
// Each part has a constructor that takes plain arguments and validates
// them: health.New(checks, health.Options), breaker.New(breaker.Config,
// breaker.Options), alert.New(rules, gatherer, alert.Options),
// dashboard.New(dashboard.Options), and here NewSystemMetrics(Config,
// SystemOptions), MetricsHandler and RegisterCollector:
//
//	reg := prometheus.NewRegistry()
//	sys, err := fxmonitor.NewSystemMetrics(fxmonitor.DefaultConfig(), fxmonitor.SystemOptions{Registerer: reg})
//	if err != nil {
//		return err
//	}
//	_ = sys.Start(ctx)
//	defer sys.Stop(ctx)
//	mux.Handle("GET /metrics", fxmonitor.MetricsHandler(reg, log))
//
// Errors start with "fxmonitor:" in every fxmonitor package.
package fxmonitor
