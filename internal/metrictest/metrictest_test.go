package metrictest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c_total"}, []string{"k"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h_seconds"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "g"})
	reg.MustRegister(c, h, g)
	c.WithLabelValues("a").Add(3)
	h.Observe(1)
	h.Observe(2)
	g.Set(-1.5)
	require.Equal(t, 3.0, Value(t, reg, "c_total", map[string]string{"k": "a"}))
	require.Equal(t, 0.0, Value(t, reg, "c_total", map[string]string{"k": "b"}))
	require.Equal(t, 0.0, Value(t, reg, "c_total", nil), "labels must match exactly")
	require.Equal(t, 2.0, Value(t, reg, "h_seconds", nil))
	require.Equal(t, -1.5, Value(t, reg, "g", nil))
	require.Equal(t, 0.0, Value(t, reg, "missing", nil))
}
