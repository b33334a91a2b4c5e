// Package dashboard is the operations dashboard: a live page of the running
// service, served from the admin server with every asset embedded (no CDN,
// no network): the service and its probes, health checks with their
// history, alerts, RED charts per HTTP route and gRPC method, circuit
// breakers, the Fx dependency graph, and the Panels other modules add.
//
// It samples a Prometheus Gatherer every Interval into a ring buffer
// covering Window and pushes the state to open pages as server-sent events.
// It changes nothing itself: a Panel's row Action is one of its module's
// own admin routes, which the page calls with the admin server's
// protection (admin token, no cross-origin browser requests).
//
// With Fx, fxmonitor.Module serves it at /dashboard/ (MARTY_MONITOR_DASHBOARD)
// with the panels registered with fxmonitor.AsPanel; fxevents registers the
// event bus' (outbox figures, dead letters and their re-drive).
//
// # Without Fx
//
// New takes plain Options (only Gatherer is required); Start samples, Stop
// ends, and the Dashboard is an http.Handler to mount at Path:
//
//	d, err := dashboard.New(dashboard.Options{Gatherer: reg, Health: h, Panels: panels})
//	if err != nil {
//		return err
//	}
//	_ = d.Start(ctx)
//	defer d.Stop(ctx)
//	mux.Handle(dashboard.Path+"/", d)
//
// The page's sources are in src/ and the pinned libraries in package.json;
// `go generate ./fxmonitor/dashboard` (build.sh, needs node and npm)
// rebuilds dist/, which is committed and embedded.
//
// Errors start with "fxmonitor:", like those of every fxmonitor package.
package dashboard
