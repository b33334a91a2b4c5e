// Package load drives load against a service under test and reports what it
// measured: throughput, latency percentiles (an HDR histogram), errors by
// gRPC code or HTTP status, CPU time and allocations per operation; it
// compares targets side by side, asserts on the figures in performance
// regression tests, and draws a chart CI keeps.
//
//	func TestPerfCreateOrder(t *testing.T) {
//		fxtest.Performance(t) // runs only with MARTY_TEST_PERF=1
//		app := fxtest.New(t, orders.Module)
//		res := load.Test(t, load.HTTP(app.HTTP(), http.MethodPost, "/v1/orders", order),
//			load.Rate(200), load.For(5*time.Second), load.Warmup(time.Second))
//		load.RequireErrorRateBelow(t, res, 0)
//		load.RequireP99Below(t, res, 50*time.Millisecond)
//	}
//
// # Targets
//
// A Target is one operation, repeated: HTTP (a route of the app, through
// its client), HTTPRequest (any request), GRPC (a unary method through the
// app's own client connection), a Probe's Target (an event from Publish on
// the app's bus to its handler, through the dispatcher and whatever the bus
// uses: outbox, relay, broker), or Func (any func(ctx) error).
//
// # Modes
//
// Open loop (Rate): operations start at a constant rate whatever the
// target's latency, and each latency is measured from the operation's
// intended start, so a target that stalls is charged for the requests that
// queued behind the stall (no coordinated omission). Closed loop (Workers,
// the default with one worker): each worker starts an operation when its
// previous one returns, the way a benchmark loop does; it measures service
// time and throughput, and hides queueing. Runs are bounded by For, Count or
// both, optionally after a Warmup, and end early with their context.
//
// # Reports
//
// Test and TestCompare log a text table and, when MARTY_ARTIFACTS_DIR is
// set, write an HTML page with SVG charts there (Chart). RequireP99Below,
// RequireErrorRateBelow and RequireRatioAtLeast fail with the whole table;
// with MARTY_TEST_PERF_REPORT_ONLY=1 the speed assertions only log.
//
// The driver's own timing uses the time package only, so its tests run it
// under testing/synctest, whose fake clock makes every latency exact.
package load
