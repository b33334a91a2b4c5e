// Package fxmonitor is martyfx's monitoring module: health checks served as
// Kubernetes probes (/livez, /readyz, /startupz), Prometheus metrics
// (/metrics, user collectors, gopsutil system gauges), named circuit breakers
// on sony/gobreaker v2, and alert rules evaluated in-process with
// Prometheus' semantics, sent to notifiers (logs, Alertmanager) and exported
// as a Prometheus rule file; and an operations dashboard at /dashboard/ on
// the admin server (Dashboard: checks, RED per route and method, event bus
// and dead letters, breakers, alerts and the Fx graph, updated live).
//
// Add Module (with fxcore.Module and fxhttp.Module for the admin server) and
// register checks, collectors, rules and notifiers with AsCheck,
// AsCollector, AsAlertRule and AsNotifier:
//
//	fx.New(fxcore.Module, fxhttp.Module, fxmonitor.Module,
//		fxmonitor.AsCheck(func(db *sql.DB) fxmonitor.Check {
//			return fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true,
//				Func: db.PingContext}
//		}),
//	)
//
// A critical check that fails turns its probes 503; a non-critical one
// reports "degraded" with 200 and raises the MartyHealthCheckDegraded alert.
// MARTY_MONITOR_CHECKS_<NAME>_CRITICAL overrides a check's choice.
//
// Other modules read *Health (Healthy, OnChange) and *Breakers (Get) from
// the graph.
package fxmonitor
