package fxhttp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// durationBuckets are the OpenTelemetry HTTP semantic-convention buckets.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// serverMetrics are the RED metrics of both servers.
type serverMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight *prometheus.GaugeVec
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	labels := []string{"server", "method", "route", "code"}
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_server_requests_total",
			Help: "HTTP requests answered, by server, method, route pattern and status code.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by server, method, route pattern and status code.",
			Buckets: durationBuckets,
		}, labels),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "http_server_requests_in_flight",
			Help: "HTTP requests being served.",
		}, []string{"server"}),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.inflight, err = register(reg, m.inflight); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the identical collector already there
// (two servers, or two clients, in one registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("fxhttp: register metrics: %w", err)
	}
	return c, nil
}

// routeInfo is what the stack knows about a pattern, resolved once: its
// route label and span name, and its metric series per method and status.
type routeInfo struct {
	server  string
	pattern string
	route   string // path part of the pattern; "unmatched" for 404/405 answers
	method  string // the pattern's method, "" when it has none
	// spanName is "{method} {route}" for requests of the pattern's method.
	spanName string
	metrics  *serverMetrics
	series   sync.Map // seriesKey -> *series
}

type seriesKey struct {
	method string
	code   int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func newRouteInfo(server, pattern string, m *serverMetrics) *routeInfo {
	ri := &routeInfo{server: server, pattern: pattern, route: routeOf(pattern), metrics: m}
	if i := strings.IndexAny(pattern, " \t"); i > 0 {
		ri.method = standardMethod(pattern[:i])
	}
	if ri.method != "" {
		ri.spanName = ri.method + " " + ri.route
	}
	return ri
}

func (ri *routeInfo) observe(method string, code int, seconds float64) {
	if method == "" {
		method = "_OTHER"
	}
	k := seriesKey{method, code}
	v, ok := ri.series.Load(k)
	if !ok {
		c := strconv.Itoa(code)
		v, _ = ri.series.LoadOrStore(k, &series{
			requests: ri.metrics.requests.WithLabelValues(ri.server, method, ri.route, c),
			duration: ri.metrics.duration.WithLabelValues(ri.server, method, ri.route, c),
		})
	}
	s := v.(*series)
	s.requests.Inc()
	s.duration.Observe(seconds)
}
