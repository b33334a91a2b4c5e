package dashboard

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// The metrics of the RED charts: fxhttp's, and the gRPC names of
// go-grpc-middleware's Prometheus provider (the library standard fxgrpc
// keeps). Every other metric the dashboard reads is named by a Panel.
const (
	httpRequestsMetric = "http_server_requests_total"
	httpDurationMetric = "http_server_request_duration_seconds"
	grpcHandledMetric  = "grpc_server_handled_total"
	grpcDurationMetric = "grpc_server_handling_seconds"
)

// num is a float64 that encodes NaN and infinities as JSON null.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

var nan = num(math.NaN())

// redKey names one RED series: an HTTP route or a gRPC method.
type redKey struct {
	kind string // "http" or "grpc"
	a, b string // http: method, route; grpc: service, method
}

// redPoint is one series' cumulative counters at a sample.
type redPoint struct {
	total, errors float64
	count         float64   // histogram sample count
	buckets       []float64 // cumulative bucket counts, aligned with the bounds
}

// regSample is one read of the registry.
type regSample struct {
	at       time.Time
	red      map[redKey]*redPoint
	values   map[string]float64 // the panels' metrics, summed over their series
	families map[string]bool    // families present in the registry
}

// ring is the dashboard's history of samples, oldest first.
type ring struct {
	buf    []regSample
	start  int
	n      int
	bounds map[string][]float64 // kind -> histogram upper bounds
	wanted map[string]bool      // the metrics whose sums go into values
	// wrapped is set once the oldest sample (taken at start) was dropped.
	wrapped bool
}

func newRing(size int, wanted map[string]bool) *ring {
	if size < 2 {
		size = 2
	}
	return &ring{buf: make([]regSample, size), bounds: map[string][]float64{}, wanted: wanted}
}

func (r *ring) add(s regSample) {
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = s
		r.n++
		return
	}
	r.buf[r.start] = s
	r.start = (r.start + 1) % len(r.buf)
	r.wrapped = true
}

func (r *ring) at(i int) *regSample { return &r.buf[(r.start+i)%len(r.buf)] }

func (r *ring) last() *regSample {
	if r.n == 0 {
		return nil
	}
	return r.at(r.n - 1)
}

// read turns a Gather result into a regSample, and notes the bucket bounds.
func (r *ring) read(fams []*dto.MetricFamily, now time.Time) regSample {
	s := regSample{at: now, red: map[redKey]*redPoint{}, values: map[string]float64{}, families: map[string]bool{}}
	point := func(k redKey) *redPoint {
		p := s.red[k]
		if p == nil {
			p = &redPoint{}
			s.red[k] = p
		}
		return p
	}
	for _, f := range fams {
		name := f.GetName()
		s.families[name] = true
		switch name {
		case httpRequestsMetric, httpDurationMetric:
			for _, m := range f.GetMetric() {
				l := labelMap(m)
				if l["server"] == "admin" {
					continue // the admin server (probes, this dashboard) is not the service's traffic
				}
				p := point(redKey{"http", l["method"], l["route"]})
				if name == httpRequestsMetric {
					v := m.GetCounter().GetValue()
					p.total += v
					if c, _ := strconv.Atoi(l["code"]); c >= 500 {
						p.errors += v
					}
				} else {
					r.addHistogram("http", p, m.GetHistogram())
				}
			}
		case grpcHandledMetric, grpcDurationMetric:
			for _, m := range f.GetMetric() {
				l := labelMap(m)
				p := point(redKey{"grpc", l["grpc_service"], l["grpc_method"]})
				if name == grpcHandledMetric {
					v := m.GetCounter().GetValue()
					p.total += v
					if l["grpc_code"] != "OK" {
						p.errors += v
					}
				} else {
					r.addHistogram("grpc", p, m.GetHistogram())
				}
			}
		}
		if r.wanted[name] {
			s.values[name] = sum(f)
		}
	}
	return s
}

// sum adds up the values of a counter, gauge or untyped family's series.
func sum(f *dto.MetricFamily) float64 {
	var v float64
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v
}

// valueOf is the summed value of a panel's metric in the sample; false
// when s is nil or the metric was not in the registry.
func (s *regSample) valueOf(name string) (float64, bool) {
	if s == nil {
		return 0, false
	}
	v, ok := s.values[name]
	return v, ok
}

func (r *ring) addHistogram(kind string, p *redPoint, h *dto.Histogram) {
	if h == nil {
		return
	}
	bs := h.GetBucket()
	if r.bounds[kind] == nil || len(r.bounds[kind]) != len(bs) {
		bounds := make([]float64, len(bs))
		for i, b := range bs {
			bounds[i] = b.GetUpperBound()
		}
		r.bounds[kind] = bounds
	}
	if len(bs) != len(r.bounds[kind]) {
		return
	}
	if p.buckets == nil {
		p.buckets = make([]float64, len(bs))
	}
	for i, b := range bs {
		p.buckets[i] += float64(b.GetCumulativeCount())
	}
	p.count += float64(h.GetSampleCount())
}

func labelMap(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// delta is a counter's increase between two reads; a reset counts from zero.
func delta(now, before float64) float64 {
	if now < before {
		return now
	}
	return now - before
}

// quantile estimates the q-quantile from cumulative bucket increases the way
// Prometheus' histogram_quantile does (linear within a bucket).
func quantile(q float64, bounds, counts []float64, total float64) float64 {
	if total <= 0 || len(bounds) == 0 || len(bounds) != len(counts) {
		return math.NaN()
	}
	rank := q * total
	prevB, prevC := 0.0, 0.0
	for i, b := range bounds {
		c := counts[i]
		if c >= rank && c > prevC {
			if math.IsInf(b, 1) {
				return prevB
			}
			return prevB + (b-prevB)*(rank-prevC)/(c-prevC)
		}
		prevB, prevC = b, c
	}
	return bounds[len(bounds)-1] // beyond the highest bucket
}

// redStats are a series' RED figures over an interval.
type redStats struct {
	Rate       num `json:"rate"`
	ErrorRatio num `json:"error_ratio"`
	P50        num `json:"p50"`
	P99        num `json:"p99"`
}

func stats(bounds []float64, a, b *redPoint, dt float64) redStats {
	st := redStats{Rate: 0, ErrorRatio: nan, P50: nan, P99: nan}
	if b == nil || dt <= 0 {
		return st
	}
	if a == nil {
		a = &redPoint{}
	}
	dTot := delta(b.total, a.total)
	st.Rate = num(dTot / dt)
	if dTot > 0 {
		st.ErrorRatio = num(delta(b.errors, a.errors) / dTot)
	}
	if b.buckets != nil && len(b.buckets) == len(bounds) {
		counts := make([]float64, len(bounds))
		for i := range counts {
			var prev float64
			if a.buckets != nil && len(a.buckets) == len(bounds) {
				prev = a.buckets[i]
			}
			counts[i] = delta(b.buckets[i], prev)
		}
		n := delta(b.count, a.count)
		st.P50 = num(quantile(0.5, bounds, counts, n))
		st.P99 = num(quantile(0.99, bounds, counts, n))
	}
	return st
}

// redSeries is one RED series as the page shows it.
type redSeries struct {
	Key    string   `json:"key"`
	Group  string   `json:"group"` // http: method; grpc: service
	Name   string   `json:"name"`  // http: route; grpc: method
	Total  float64  `json:"total"` // requests since start
	Window redStats `json:"window"`
	// Points are the chart's values, one per regSample: rate, error ratio,
	// p50 and p99 over the smoothing window before each regSample.
	Points redChart `json:"points"`
}

// redChart holds uPlot-ready columns.
type redChart struct {
	Rate       []num `json:"rate"`
	ErrorRatio []num `json:"error_ratio"`
	P50        []num `json:"p50"`
	P99        []num `json:"p99"`
}

// red computes every series of kind over the ring, and names those that
// never had traffic (gRPC pre-declares every method) in idle. smooth is how
// many samples back each chart point looks.
func (r *ring) red(kind string, smooth int) (out []redSeries, idle []string) {
	out, idle = []redSeries{}, []string{}
	if r.n == 0 {
		return out, idle
	}
	last := r.last()
	keys := make([]redKey, 0)
	for k := range last.red {
		if k.kind == kind {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].b != keys[j].b {
			return keys[i].b < keys[j].b
		}
		return keys[i].a < keys[j].a
	})
	bounds := r.bounds[kind]
	first := r.at(0)
	for _, k := range keys {
		s := redSeries{Group: k.a, Name: k.b, Total: last.red[k].total}
		if kind == "http" {
			s.Key = strings.TrimSpace(k.a + " " + k.b)
		} else {
			s.Key = "/" + k.a + "/" + k.b
		}
		if s.Total == 0 {
			idle = append(idle, s.Key)
			continue
		}
		s.Window = stats(bounds, first.red[k], last.red[k], last.at.Sub(first.at).Seconds())
		if r.n == 1 {
			s.Window = redStats{Rate: 0, ErrorRatio: nan, P50: nan, P99: nan}
		}
		for i := 0; i < r.n; i++ {
			var st redStats
			if i == 0 {
				st = redStats{Rate: nan, ErrorRatio: nan, P50: nan, P99: nan}
			} else {
				a, b, dt := r.window(i, smooth)
				st = stats(bounds, a.red[k], b.red[k], dt)
			}
			s.Points.Rate = append(s.Points.Rate, st.Rate)
			s.Points.ErrorRatio = append(s.Points.ErrorRatio, st.ErrorRatio)
			s.Points.P50 = append(s.Points.P50, st.P50)
			s.Points.P99 = append(s.Points.P99, st.P99)
		}
		out = append(out, s)
	}
	return out, idle
}

// window returns the samples that bound chart point i and the seconds
// between them: smooth samples back, or back to the first sample, which the
// ring took when the app started; then the window still counts as smooth
// samples long (there was no traffic before), so the first points do not
// spike from dividing by a short time.
func (r *ring) window(i, smooth int) (a, b *regSample, dt float64) {
	a, b = r.at(max(0, i-smooth)), r.at(i)
	dt = b.at.Sub(a.at).Seconds()
	if i < smooth && i > 0 && !r.wrapped {
		dt = max(dt, dt/float64(i)*float64(smooth))
	}
	return a, b, dt
}

// times returns the samples' times in Unix seconds, for the charts' x axis.
func (r *ring) times() []float64 {
	out := make([]float64, r.n)
	for i := range out {
		out[i] = float64(r.at(i).at.UnixMilli()) / 1000
	}
	return out
}

// rateOf is a summed counter's per-second increase over the ring, and its
// per-sample series; NaN where the counter is not in the registry.
func (r *ring) rateOf(name string, smooth int) (num, []num) {
	series := make([]num, r.n)
	for i := 0; i < r.n; i++ {
		series[i] = nan
		if i == 0 {
			continue
		}
		a, b, dt := r.window(i, smooth)
		if now, ok := b.valueOf(name); ok {
			before, _ := a.valueOf(name) // a counter that appeared counts from 0
			series[i] = num(delta(now, before) / dt)
		}
	}
	if r.n < 2 {
		return nan, series
	}
	first, last := r.at(0), r.last()
	now, ok := last.valueOf(name)
	if !ok {
		return nan, series
	}
	before, _ := first.valueOf(name)
	return num(delta(now, before) / last.at.Sub(first.at).Seconds()), series
}

// gaugeOf is a summed gauge's per-regSample series.
func (r *ring) gaugeOf(name string) []num {
	series := make([]num, r.n)
	for i := range series {
		v, ok := r.at(i).values[name]
		if !ok {
			series[i] = nan
			continue
		}
		series[i] = num(v)
	}
	return series
}

var _ json.Marshaler = num(0)
