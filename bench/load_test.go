package bench

import (
	"context"
	"runtime"
	"testing"

	"github.com/martyfx/martyfx/fxtest/load"
)

// BenchmarkLoadDriver measures fxtest/load's own overhead against a no-op
// target, b.N operations per run:
//
//   - closed: GOMAXPROCS workers as fast as they go: the most operations/s
//     the driver sustains (each one timed, recorded in its HDR histogram,
//     counted in its timeline);
//   - open-250k: an open loop at 250k operations/s: the achieved rate
//     ("ops/s", 250k when the pacer keeps up) and the p99 latency of a
//     no-op, which is the delay the driver itself adds to an operation's
//     intended start;
//   - open-10k: the same at 10k operations/s, a rate where the pacer sleeps
//     between operations: its p99 is the driver's noise floor at the rates
//     services are usually tested at (b.N/10k seconds: use -benchtime
//     50000x).
//
// The driver allocates nothing per operation ("allocs/op" reports the
// process's heap allocations per operation during the run).
func BenchmarkLoadDriver(b *testing.B) {
	noop := load.Func("noop", func(context.Context) error { return nil })
	for _, tc := range []struct {
		name string
		opts []load.Option
	}{
		{"closed", []load.Option{load.Workers(runtime.GOMAXPROCS(0))}},
		{"open-250k", []load.Option{load.Rate(250_000)}},
		{"open-10k", []load.Option{load.Rate(10_000)}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			res, err := load.Run(context.Background(), noop, append(tc.opts, load.Count(b.N))...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.Throughput, "ops/s")
			b.ReportMetric(float64(res.P99)/1e3, "p99-µs")
			if res.Late != nil {
				b.ReportMetric(float64(res.LateP99)/1e3, "late-p99-µs")
			}
			b.ReportMetric(res.AllocsPerOp, "allocs/op")
			if b.N >= 100_000 {
				b.Logf("\n%s", res)
			}
		})
	}
}
