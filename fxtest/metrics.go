package fxtest

import (
	"fmt"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// Metric returns the value of the metric name in the app's registry, summed
// over the series whose labels include the given pairs
// (labels: "key", "value", ...): a counter's or gauge's value, a histogram's
// or summary's sample count. It fails the test when no series matches,
// listing the series of that name (or the metric names when there is no such
// metric).
func (a *App) Metric(name string, labels ...string) float64 {
	a.t.Helper()
	if len(labels)%2 != 0 {
		a.fatalf("fxtest: Metric(%q): labels must be key, value pairs, got %d strings", name, len(labels))
		return 0
	}
	want := map[string]string{}
	for i := 0; i < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	v, ok, seen := a.metric(name, want)
	if !ok {
		a.fatalf("fxtest: no series %s%s in the registry; %s", name, formatLabels(want), seen)
	}
	return v
}

// metric sums the matching series; when none matches, seen says what was
// there instead.
func (a *App) metric(name string, want map[string]string) (float64, bool, string) {
	if a.g.Gatherer == nil {
		return 0, false, "the app has no registry (add fxcore.Module)"
	}
	mfs, err := a.g.Gatherer.Gather()
	if err != nil {
		return 0, false, fmt.Sprintf("gather failed: %v", err)
	}
	var names []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			names = append(names, mf.GetName())
			continue
		}
		sum, n := 0.0, 0
		var series []string
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			series = append(series, fmt.Sprintf("  %s%s %g", name, formatLabels(got), value(m)))
			if matches(got, want) {
				sum += value(m)
				n++
			}
		}
		if n == 0 {
			return 0, false, "the series were:\n" + strings.Join(series, "\n")
		}
		return sum, true, ""
	}
	sort.Strings(names)
	return 0, false, "there is no metric of that name; the metrics were: " + strings.Join(names, ", ")
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Summary != nil:
		return float64(m.Summary.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

func matches(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return "{" + strings.Join(parts, ",") + "}"
}
