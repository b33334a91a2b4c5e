package fxmonitor_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxmonitor"
)

func TestCollectorsAreRegisteredAndServed(t *testing.T) {
	t.Parallel()
	orders := prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_created_total", Help: "Orders created."})
	h := start(t, quiet,
		fxmonitor.AsCollector(orders),
		fxmonitor.AsCollector(func(_ *zap.Logger) prometheus.Collector { // parameters are injected
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "queue_depth", Help: "Depth."}, func() float64 { return 7 })
		}),
	)
	orders.Add(3)
	mfs := h.scrape()
	v, ok := value(mfs, "orders_created_total", nil)
	require.True(t, ok)
	require.Equal(t, 3.0, v)
	v, _ = value(mfs, "queue_depth", nil)
	require.Equal(t, 7.0, v)
	_, ok = value(mfs, "go_goroutines", nil)
	require.True(t, ok, "the Go collector is served")
}

func TestCollectorRegisteredTwiceFailsStart(t *testing.T) {
	t.Parallel()
	mk := func() prometheus.Collector {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_created_total", Help: "Orders created."})
	}
	_, err := newApp(t, quiet, fxmonitor.AsCollector(mk), fxmonitor.AsCollector(mk))
	require.ErrorContains(t, err, `fxmonitor: register collector *prometheus.counter: metric "orders_created_total" is already registered`)

	// Clashing with a built-in metric names it too.
	_, err = newApp(t, quiet, fxmonitor.AsCollector(prometheus.NewGauge(prometheus.GaugeOpts{Name: "marty_health_check_status", Help: "x"})))
	require.ErrorContains(t, err, `"marty_health_check_status"`)

	_, err = newApp(t, quiet, fxmonitor.AsCollector(func() int { return 1 }))
	require.Regexp(t, `fxmonitor\.AsCollector: fxmonitor_test\.\S+: constructor func\(\) int: got int, want a prometheus\.Collector`, err.Error())
}

func TestSystemGaugesAreSampledWithinRange(t *testing.T) {
	t.Parallel()
	h := start(t, append(quiet, "MARTY_MONITOR_DISK_PATH=/"))
	mfs := h.scrape()
	for _, name := range []string{
		"marty_system_cpu_utilization_ratio", "marty_system_memory_utilization_ratio", "marty_system_disk_utilization_ratio",
	} {
		v, ok := value(mfs, name, nil)
		require.True(t, ok, name)
		require.GreaterOrEqual(t, v, 0.0, name)
		require.LessOrEqual(t, v, 1.0, name)
	}
	v, _ := value(mfs, "marty_system_memory_utilization_ratio", nil)
	require.Greater(t, v, 0.0, "a running machine uses some memory")
	used, _ := value(mfs, "marty_system_memory_used_bytes", nil)
	total, _ := value(mfs, "marty_system_memory_total_bytes", nil)
	require.Greater(t, total, used)
	require.Greater(t, used, 0.0)
	_, ok := value(mfs, "marty_system_disk_utilization_ratio", map[string]string{"path": "/"})
	require.True(t, ok)
	_, ok = value(mfs, "marty_system_load1", nil)
	require.True(t, ok)

	h = start(t, append(quiet, "MARTY_MONITOR_SYSTEM_ENABLED=false"))
	_, ok = value(h.scrape(), "marty_system_cpu_utilization_ratio", nil)
	require.False(t, ok, "can be turned off")
}

func TestMetricsNegotiatesOpenMetricsWithExemplars(t *testing.T) {
	t.Parallel()
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "checkout_seconds", Help: "Checkout latency.", Buckets: []float64{0.1, 1}})
	h := start(t, quiet, fxmonitor.AsCollector(lat))
	lat.(prometheus.ExemplarObserver).ObserveWithExemplar(0.05, prometheus.Labels{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"})

	code, body, hdr := h.get("/metrics", "Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(hdr.Get("Content-Type"), "application/openmetrics-text"), hdr.Get("Content-Type"))
	require.Contains(t, body, `checkout_seconds_bucket{le="0.1"} 1 # {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} 0.05`)
	require.True(t, strings.HasSuffix(body, "# EOF\n"))

	code, body, hdr = h.get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(hdr.Get("Content-Type"), "text/plain"), hdr.Get("Content-Type"))
	require.Contains(t, body, `checkout_seconds_bucket{le="0.1"} 1`)
	require.NotContains(t, body, "trace_id", "the text format has no exemplars")
}
