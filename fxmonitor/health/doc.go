// Package health runs health checks and serves them as Kubernetes probes:
// /livez, /readyz and /startupz answer 200 or 503 with a plain text body,
// or JSON with ?verbose.
//
// A Check feeds one or more probe Kinds. Checks with an Interval run in the
// background and are served from cache; the others run on request, cached
// for a TTL, never more than one run of a check at a time. A check that
// hangs fails at its Timeout and flips to failing after FailureThreshold
// consecutive failures. A critical check that fails turns its probes 503; a
// non-critical one reports "degraded" with 200. Readiness is false until the
// startup checks have passed once and from the moment shutdown begins.
//
// With Fx, fxmonitor.Module builds the Health from the checks registered
// with fxmonitor.AsCheck (fxmonitor.Check is this package's Check) and
// serves the probes on the admin server.
//
// # Without Fx
//
// New takes the checks and plain Options; Start runs the background checks,
// Stop ends them, ProbeHandler serves a probe:
//
//	h, err := health.New([]health.Check{{
//		Name: "db", Kinds: health.Readiness, Critical: true, Func: db.PingContext,
//	}}, health.Options{Registerer: reg, Logger: log})
//	if err != nil {
//		return err
//	}
//	_ = h.Start(ctx)
//	defer h.Stop(ctx)
//	mux.Handle("GET /readyz", h.ProbeHandler(health.Readiness))
//
// Errors start with "fxmonitor:", like those of every fxmonitor package.
package health
