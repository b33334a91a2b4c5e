package load

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Result is what a run measured. Latencies are those of every measured
// operation, failed ones included, from its start (an open-loop run: its
// intended start) to its return, read from Histogram.
type Result struct {
	// Name is the target's.
	Name string
	// Mode describes the run: open or closed loop, rate, workers, bounds.
	Mode string
	// Rate is the open-loop arrival rate (0: closed loop).
	Rate float64
	// Workers is the number of workers (closed loop) or the most that ran
	// at once (open loop).
	Workers int
	// Count is the number of operations measured; Failed of them failed.
	Count, Failed int64
	// Errors counts the failed operations by class (ErrorClass: "HTTP
	// 503", "gRPC Unavailable" ...); ErrorSamples has the first message of
	// each class.
	Errors       map[string]int64
	ErrorSamples map[string]string
	// Aborted counts the operations cut short by the end of Run's context
	// (not measured).
	Aborted int64
	// Elapsed is the time from the start to the last operation's return;
	// Throughput is Count / Elapsed, in operations per second.
	Elapsed    time.Duration
	Throughput float64
	// The latency percentiles, read from Histogram.
	Min, P50, P90, P99, P999, Max time.Duration
	Mean                          time.Duration
	// CPUPerOp is the process's CPU time (user + system) during the run
	// divided by Count; AllocsPerOp and BytesPerOp are the process's heap
	// allocations during the run divided by Count (runtime.MemStats). Both
	// include the driver, the client and anything else the process did:
	// an app under test in the same process, other tests running in
	// parallel.
	CPUPerOp                time.Duration
	AllocsPerOp, BytesPerOp float64
	// Timeline is the throughput over time: operations returned per
	// second in each BucketWidth since the start.
	Timeline    []Point
	BucketWidth time.Duration
	// Histogram holds the latencies in nanoseconds (three significant
	// digits).
	Histogram *hdrhistogram.Histogram
	// Late (open loop only; nil otherwise) holds how late each operation
	// started after its intended start, in nanoseconds: the pacer's timer
	// resolution and scheduling, and waiting for a free worker (Workers).
	// It is part of each latency; LateP99 is its p99. A LateP99 close to
	// P99 says the driver or the machine, not the target, set the p99.
	Late    *hdrhistogram.Histogram
	LateP99 time.Duration

	cpu            time.Duration
	mallocs, bytes uint64
}

// Point is one bucket of Result.Timeline.
type Point struct {
	// At is the bucket's start, since the run's start.
	At time.Duration
	// Rate is the operations returned in the bucket, per second.
	Rate float64
}

// fill computes the figures derived from the histogram and the totals.
func (r *Result) fill() {
	h := r.Histogram
	r.Min = time.Duration(h.Min())
	r.P50 = time.Duration(h.ValueAtQuantile(50))
	r.P90 = time.Duration(h.ValueAtQuantile(90))
	r.P99 = time.Duration(h.ValueAtQuantile(99))
	r.P999 = time.Duration(h.ValueAtQuantile(99.9))
	r.Max = time.Duration(h.Max())
	r.Mean = time.Duration(h.Mean())
	r.LateP99 = 0
	if r.Late != nil {
		r.LateP99 = time.Duration(r.Late.ValueAtQuantile(99))
	}
	r.Throughput, r.CPUPerOp, r.AllocsPerOp, r.BytesPerOp = 0, 0, 0, 0
	if r.Elapsed > 0 {
		r.Throughput = float64(r.Count) / r.Elapsed.Seconds()
	}
	if r.Count > 0 {
		r.CPUPerOp = r.cpu / time.Duration(r.Count)
		r.AllocsPerOp = float64(r.mallocs) / float64(r.Count)
		r.BytesPerOp = float64(r.bytes) / float64(r.Count)
	}
}

// Percentile returns the latency at percentile q (0 to 100) from the
// histogram.
func (r *Result) Percentile(q float64) time.Duration {
	return time.Duration(r.Histogram.ValueAtQuantile(q))
}

// ErrorRate is Failed / Count (0 when nothing was measured).
func (r *Result) ErrorRate() float64 {
	if r.Count == 0 {
		return 0
	}
	return float64(r.Failed) / float64(r.Count)
}

// String is the report: how the run was driven, a table of the figures, and
// the errors by class with a sample message.
func (r *Result) String() string { return table([]*Result{r}, nil) }

// table renders results, with ratios to the first when ratios is not nil.
func table(rs []*Result, ratios []Ratio) string {
	var b strings.Builder
	modes := map[string]bool{}
	for _, r := range rs {
		if !modes[r.Mode] {
			modes[r.Mode] = true
			fmt.Fprintf(&b, "load: %s\n", r.Mode)
		}
	}
	open := slices.ContainsFunc(rs, func(r *Result) bool { return r.Late != nil })
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "target\tops\tops/s\tp50\tp90\tp99\tp99.9\tmax\terrors\tcpu/op\tallocs/op\tB/op\t"
	if open {
		head += "late p99\t"
	}
	if ratios != nil {
		head += "x first\tcpu x first\tp99 x first\t"
	}
	fmt.Fprintln(tw, head)
	for i, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t",
			r.Name, r.Count, fmtNum(r.Throughput),
			fmtDur(r.P50), fmtDur(r.P90), fmtDur(r.P99), fmtDur(r.P999), fmtDur(r.Max),
			fmtErrors(r), fmtDur(r.CPUPerOp), fmtNum(r.AllocsPerOp), fmtBytes(r.BytesPerOp))
		if open {
			fmt.Fprintf(tw, "%s\t", fmtDur(r.LateP99))
		}
		if ratios != nil && i < len(ratios) {
			q := ratios[i]
			fmt.Fprintf(tw, "%.2f\t%.2f\t%.2f\t", q.Throughput, q.CPU, q.P99)
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
	for _, r := range rs {
		for _, class := range slices.Sorted(maps.Keys(r.Errors)) {
			fmt.Fprintf(&b, "  %s: %s × %d, first: %s\n", r.Name, class, r.Errors[class], r.ErrorSamples[class])
		}
		if r.Aborted > 0 {
			fmt.Fprintf(&b, "  %s: %d operations cut short by the end of the run (not measured)\n", r.Name, r.Aborted)
		}
	}
	return b.String()
}

func fmtErrors(r *Result) string {
	if r.Failed == 0 {
		return "0"
	}
	return fmt.Sprintf("%d (%.2f%%)", r.Failed, 100*r.ErrorRate())
}

// fmtDur prints d with three significant digits.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return strconv.FormatInt(int64(d), 10) + "ns"
	case d < time.Millisecond:
		return fmtNum(float64(d)/1e3) + "µs"
	case d < time.Second:
		return fmtNum(float64(d)/1e6) + "ms"
	default:
		return fmtNum(d.Seconds()) + "s"
	}
}

// fmtNum prints x with three significant digits (and no exponent).
func fmtNum(x float64) string {
	switch {
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	default:
		return strconv.FormatFloat(x, 'f', 2, 64)
	}
}

func fmtBytes(x float64) string {
	switch {
	case x >= 1<<20:
		return fmtNum(x/(1<<20)) + "MiB"
	case x >= 1<<10:
		return fmtNum(x/(1<<10)) + "KiB"
	default:
		return fmtNum(x)
	}
}
