package load_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxtest/load"
)

// slow10ms takes 10ms; every tenth operation fails.
func slow10ms() load.Target {
	var n atomic.Int64
	return load.Func("slow", func(context.Context) error {
		time.Sleep(10 * time.Millisecond)
		if n.Add(1)%10 == 0 {
			return errors.New("every tenth")
		}
		return nil
	})
}

// The assertions fail with the whole table; the speed ones only log with
// MARTY_TEST_PERF_REPORT_ONLY=1, the error-rate one fails all the same.
// Not parallel: it sets the variable.
func TestAssertionsPrintTheTable(t *testing.T) {
	var res *load.Result
	var cmp *load.Comparison
	synctest.Test(t, func(t *testing.T) {
		var err error
		res, err = load.Run(t.Context(), slow10ms(), load.Count(100))
		require.NoError(t, err)
		fast := load.Func("fast", func(context.Context) error { time.Sleep(time.Millisecond); return nil })
		cmp, err = load.Compare(t.Context(), []load.Target{fast, slow10ms()}, load.Count(10), load.Rounds(3))
		require.NoError(t, err)
	})
	table := res.String()
	require.Contains(t, table, "target")
	require.Contains(t, table, "p99.9")
	require.Contains(t, table, "10 (10.00%)")

	for _, reportOnly := range []string{"", "1"} {
		t.Setenv(load.EnvReportOnly, reportOnly)
		f := &fakeTB{TB: t}
		require.True(t, f.run(func() { load.RequireP99Below(f, res, 10*time.Millisecond+100*time.Microsecond) }), "p99 is 10ms: %s", f.fatal())
		require.True(t, f.run(func() { load.RequireErrorRateBelow(f, res, 0.1) }), "10%% may fail: %s", f.fatal())
		require.True(t, f.run(func() { load.RequireRatioAtLeast(f, cmp, "slow", 0.09) }), f.fatal())

		checks := []struct {
			fn    func(testing.TB)
			speed bool
			want  string
		}{
			{func(f testing.TB) { load.RequireP99Below(f, res, 5*time.Millisecond) }, true, "load: the p99 latency of slow is 10.0ms, above 5.00ms\n"},
			{func(f testing.TB) { load.RequireErrorRateBelow(f, res, 0) }, false, "load: 10 of 100 operations of slow failed (10.00%), above 0.00%\n"},
			{func(f testing.TB) { load.RequireRatioAtLeast(f, cmp, "slow", 0.5) }, true, "load: the throughput of slow is 0.10× fast's, below 0.50×\n"},
		}
		for _, c := range checks {
			f := &fakeTB{TB: t}
			completed := f.run(func() { c.fn(f) })
			out := f.fatal()
			if c.speed && reportOnly == "1" {
				require.True(t, completed)
				require.Empty(t, out)
				out = f.logged()
				require.Contains(t, out, "REPORT ONLY (MARTY_TEST_PERF_REPORT_ONLY=1), not failing: ")
			} else {
				require.False(t, completed, c.want)
			}
			require.Contains(t, out, c.want)
			require.Contains(t, out, "target", "the table is printed")
			require.Contains(t, out, "p99.9")
			require.Contains(t, out, "slow: error × ", "with the errors by class")
		}
	}

	f := &fakeTB{TB: t}
	require.False(t, f.run(func() { load.RequireRatioAtLeast(f, cmp, "nope", 1) }))
	require.Contains(t, f.fatal(), `load: RequireRatioAtLeast: no target named "nope"; the targets are "fast", "slow"`)
	f = &fakeTB{TB: t}
	require.False(t, f.run(func() { load.RequireErrorRateBelow(f, &load.Result{Name: "idle"}, 1) }))
	require.Contains(t, f.fatal(), "load: idle measured no operation")
}

// Test logs the table and writes a self-contained HTML chart per run to
// MARTY_ARTIFACTS_DIR. Not parallel: it sets the variable.
func TestChartArtifacts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "artifacts")
	t.Setenv(load.EnvArtifactsDir, dir)
	synctest.Test(t, func(t *testing.T) {
		f := &fakeTB{TB: t}
		op := load.Func("<create> order", func(context.Context) error { time.Sleep(time.Millisecond); return nil })
		require.True(t, f.run(func() { load.Test(f, op, load.Rate(100), load.For(time.Second)) }), f.fatal())
		require.True(t, f.run(func() { load.Test(f, op, load.Count(10)) }), f.fatal())
		other := load.Func("other", func(context.Context) error { time.Sleep(2 * time.Millisecond); return nil })
		require.True(t, f.run(func() { load.TestCompare(f, []load.Target{op, other}, load.Count(10), load.Rounds(3)) }), f.fatal())
		logs := f.logged()
		require.Contains(t, logs, "load: open loop at 100/s (at most 1000 in flight), for 1s")
		require.Contains(t, logs, "load: chart written to "+filepath.Join(dir, "load-TestChartArtifacts.html"))
		require.Contains(t, logs, "load: chart written to "+filepath.Join(dir, "load-TestChartArtifacts-3.html"))
	})
	for _, name := range []string{"load-TestChartArtifacts.html", "load-TestChartArtifacts-2.html", "load-TestChartArtifacts-3.html"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		page := string(b)
		require.True(t, strings.HasPrefix(page, "<!DOCTYPE html>"), name)
		require.Equal(t, 2, strings.Count(page, "<svg "), "percentile curve and throughput: %s", name)
		require.Contains(t, page, "Latency by percentile")
		require.Contains(t, page, "99%")
		require.Contains(t, page, "<polyline")
		require.Contains(t, page, "&lt;create&gt; order", "names are escaped")
		require.NotContains(t, page, "<create>")
		for _, external := range []string{"<script", "src=", "href=", "http://", "https://", "url("} {
			require.NotContains(t, page, external, "self-contained: %s", name)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "load-TestChartArtifacts-3.html"))
	require.NoError(t, err)
	require.Contains(t, string(b), ">round</text>", "a comparison plots the throughput by round")
	require.Contains(t, string(b), "x first")
}

// Test and TestCompare fail the test on bad options.
func TestTestFailsOnBadOptions(t *testing.T) {
	t.Parallel()
	f := &fakeTB{TB: t}
	require.False(t, f.run(func() { load.Test(f, load.Func("x", func(context.Context) error { return nil })) }))
	require.Contains(t, f.fatal(), "no bound")
	f = &fakeTB{TB: t}
	require.False(t, f.run(func() { load.TestCompare(f, nil, load.Count(1)) }))
	require.Contains(t, f.fatal(), "Compare needs two or more targets")
}
