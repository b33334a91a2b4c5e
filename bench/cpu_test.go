package bench

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// cpuTicks reads the machine's busy and idle CPU time from /proc/stat, in
// clock ticks (1/100 s): with Postgres on the same machine, busy minus the
// benchmark's own CPU (procTicks) is roughly what the database spent.
func cpuTicks() (busy, idle int64) {
	b, _ := os.ReadFile("/proc/stat")
	f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:]
	for i, x := range f {
		v, _ := strconv.ParseInt(x, 10, 64)
		if i == 3 || i == 4 {
			idle += v
		} else {
			busy += v
		}
	}
	return
}

// procTicks reads this process's CPU time (user + system) in clock ticks.
func procTicks() int64 {
	b, _ := os.ReadFile("/proc/self/stat")
	s := string(b)
	f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

// reportCPU reports the machine's busy CPU seconds during the measured
// part, the share of time the CPUs were busy, and the benchmark process's
// own CPU seconds (self < 0: not measured).
func reportCPU(b *testing.B, busy, idle, self int64) {
	b.ReportMetric(float64(busy)/100, "cpu-s")
	b.ReportMetric(float64(busy)/float64(max(1, busy+idle)), "cpu-busy")
	if self >= 0 {
		b.ReportMetric(float64(self)/100, "self-cpu-s")
	}
}
