package load

import (
	"fmt"
	"math"
	"os"
	"testing"
	"time"
)

// EnvReportOnly names the variable that turns the speed assertions
// (RequireP99Below, RequireRatioAtLeast) into reports: when it is "1" they
// log what would have failed instead of failing the test. CI's
// performance step sets it, so that a busy shared machine never fails the
// build on a speed, while errors (RequireErrorRateBelow), panics and
// build failures still do.
const EnvReportOnly = "MARTY_TEST_PERF_REPORT_ONLY"

// Test is Run for a test: it drives target with the test's context (so the
// run ends with the test), logs the report table, writes a chart to
// MARTY_ARTIFACTS_DIR when it is set (see WriteChart), and fails the test
// (with the table of what was measured) on bad options or when the run was
// stopped.
func Test(t testing.TB, target Target, opts ...Option) *Result {
	t.Helper()
	res, err := Run(t.Context(), target, opts...)
	if res != nil {
		t.Logf("%s", res)
		chartArtifact(t, res.Name, []*Result{res}, nil)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return res
}

// TestCompare is Compare for a test, like Test: it logs the table, writes
// the chart, and fails the test on bad options or when it was stopped.
func TestCompare(t testing.TB, targets []Target, opts ...Option) *Comparison {
	t.Helper()
	c, err := Compare(t.Context(), targets, opts...)
	if c != nil && len(c.Results) > 0 {
		t.Logf("%s", c)
		chartArtifact(t, "comparison", c.Results, c)
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	return c
}

// RequireP99Below fails the test when r's p99 latency is above limit,
// printing r's whole table. It is a speed assertion: with
// MARTY_TEST_PERF_REPORT_ONLY=1 it logs instead of failing.
func RequireP99Below(t testing.TB, r *Result, limit time.Duration) {
	t.Helper()
	if r == nil {
		t.Fatalf("load: RequireP99Below: no result")
		return
	}
	if r.P99 <= limit {
		return
	}
	speedFailure(t, "load: the p99 latency of %s is %s, above %s\n%s", r.Name, fmtDur(r.P99), fmtDur(limit), r)
}

// RequireErrorRateBelow fails the test when more than limit (0 to 1) of
// r's operations failed (0: any failure fails), printing r's whole table
// with the errors by class. Errors are not speed: it fails even with
// MARTY_TEST_PERF_REPORT_ONLY=1. A run that measured nothing fails too.
func RequireErrorRateBelow(t testing.TB, r *Result, limit float64) {
	t.Helper()
	if r == nil {
		t.Fatalf("load: RequireErrorRateBelow: no result")
		return
	}
	if r.Count == 0 {
		t.Fatalf("load: %s measured no operation\n%s", r.Name, r)
		return
	}
	if r.ErrorRate() <= limit {
		return
	}
	t.Fatalf("load: %d of %d operations of %s failed (%.2f%%), above %.2f%%\n%s",
		r.Failed, r.Count, r.Name, 100*r.ErrorRate(), 100*limit, r)
}

// RequireRatioAtLeast fails the test when the throughput ratio of the
// target named name to the first target (Ratio.Throughput, a median over
// rounds) is below limit, printing the comparison's whole table. It is a
// speed assertion: with MARTY_TEST_PERF_REPORT_ONLY=1 it logs instead of
// failing.
func RequireRatioAtLeast(t testing.TB, c *Comparison, name string, limit float64) {
	t.Helper()
	if c == nil {
		t.Fatalf("load: RequireRatioAtLeast: no comparison")
		return
	}
	q, ok := c.Ratio(name)
	if !ok {
		t.Fatalf("load: RequireRatioAtLeast: no target named %q; the targets are %s\n%s", name, c.names(), c)
		return
	}
	if q.Throughput >= limit {
		return
	}
	what := fmt.Sprintf("%.2f", q.Throughput)
	if math.IsNaN(q.Throughput) {
		what = "unknown (no round measured a throughput)"
	}
	speedFailure(t, "load: the throughput of %s is %s× %s's, below %.2f×\n%s",
		name, what, c.Results[0].Name, limit, c)
}

// speedFailure fails the test, or logs when MARTY_TEST_PERF_REPORT_ONLY=1.
func speedFailure(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(EnvReportOnly) == "1" {
		t.Logf("REPORT ONLY (%s=1), not failing: "+format, append([]any{EnvReportOnly}, args...)...)
		return
	}
	t.Fatalf(format, args...)
}
