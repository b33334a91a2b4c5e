package dashboard

import (
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

func TestQuantileInterpolatesLikeHistogramQuantile(t *testing.T) {
	t.Parallel()
	bounds := []float64{0.1, 0.2, 0.4, math.Inf(1)}
	// 10 observations: 4 in (0, 0.1], 4 in (0.1, 0.2], 2 in (0.2, 0.4].
	counts := []float64{4, 8, 10, 10}
	require.InDelta(t, 0.125, quantile(0.5, bounds, counts, 10), 1e-12) // rank 5: 1/4 into the second bucket
	require.InDelta(t, 0.39, quantile(0.99, bounds, counts, 10), 1e-12) // rank 9.9: 0.95 into the third
	require.InDelta(t, 0.025, quantile(0.1, bounds, counts, 10), 1e-12)
	require.True(t, math.IsNaN(quantile(0.5, bounds, []float64{0, 0, 0, 0}, 0)), "no observation: no quantile")
	// Beyond the last finite bucket: its upper bound, as Prometheus answers.
	require.Equal(t, 0.4, quantile(0.99, bounds, []float64{0, 0, 1, 10}, 10))
	require.Equal(t, 0.4, quantile(0.99, []float64{0.1, 0.2, 0.4}, []float64{0, 0, 1}, 10))
}

func TestNumEncodesNaNAsNull(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal([]num{1.5, nan, num(math.Inf(1)), 1.0 / 3})
	require.NoError(t, err)
	require.Equal(t, `[1.5,null,null,0.3333333333333333]`, string(b))
}

// TestRingRatesFromARealRegistry feeds the ring from a registry with the
// fxhttp metric names, across a counter reset and past its capacity.
func TestRingRatesFromARealRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	labels := []string{"server", "method", "route", "code"}
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: httpRequestsMetric}, labels)
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: httpDurationMetric, Buckets: []float64{0.01, 0.1, 1}}, labels)
	reg.MustRegister(reqs, dur)
	r := newRing(4, nil)
	t0 := time.Unix(1000, 0)
	read := func(at time.Duration) {
		fams, err := reg.Gather()
		require.NoError(t, err)
		r.add(r.read(fams, t0.Add(at)))
	}
	observe := func(code string, n int, secs float64) {
		for range n {
			reqs.WithLabelValues("api", "GET", "/a", code).Inc()
			dur.WithLabelValues("api", "GET", "/a", code).Observe(secs)
		}
	}
	read(0)
	observe("200", 8, 0.005)
	observe("503", 2, 0.5)
	reqs.WithLabelValues("admin", "GET", "/metrics", "200").Add(100) // not the service's traffic
	read(2 * time.Second)

	series, idle := r.red("http", 1)
	require.Empty(t, idle)
	require.Len(t, series, 1, "the admin server is left out")
	s := series[0]
	require.Equal(t, "GET /a", s.Key)
	require.Equal(t, 10.0, s.Total)
	require.InDelta(t, 5.0, float64(s.Window.Rate), 1e-12) // 10 requests in 2s
	require.InDelta(t, 0.2, float64(s.Window.ErrorRatio), 1e-12)
	require.InDelta(t, 0.00625, float64(s.Window.P50), 1e-12) // rank 5 of 8 in (0, 0.01]
	require.InDelta(t, 0.955, float64(s.Window.P99), 1e-12)   // rank 9.9: 0.95 into (0.1, 1]
	require.Len(t, s.Points.Rate, 2)
	require.True(t, math.IsNaN(float64(s.Points.Rate[0])))

	// Two more samples, then a fifth: the ring drops the oldest.
	read(4 * time.Second)
	read(6 * time.Second)
	observe("200", 4, 0.005)
	read(8 * time.Second)
	require.Equal(t, 4, r.n)
	require.True(t, r.wrapped)
	require.Equal(t, []float64{1002, 1004, 1006, 1008}, r.times())
	series, _ = r.red("http", 1)
	require.InDelta(t, 4.0/6, float64(series[0].Window.Rate), 1e-12, "4 requests between the oldest kept sample (2s) and 8s")
	require.InDelta(t, 2.0, float64(series[0].Points.Rate[3]), 1e-12, "the last point: 4 requests in 2s")
}
