package fxhttp

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Breaker is a circuit breaker: Execute runs fn while the circuit is closed
// (or half-open) and counts its error as a failure; when open it returns an
// error without running fn. fxmonitor's breakers satisfy it.
type Breaker interface {
	Execute(fn func() error) error
}

// ClientOption configures NewClient.
type ClientOption func(*clientConfig)

type clientConfig struct {
	name      string
	timeout   time.Duration
	transport http.RoundTripper
	tp        trace.TracerProvider
	prop      propagation.TextMapPropagator
	reg       prometheus.Registerer
	breaker   Breaker
}

// WithName labels the client's metrics (client="name"); default "default".
func WithName(name string) ClientOption { return func(c *clientConfig) { c.name = name } }

// WithTimeout bounds a whole request, body read included (default 30s; 0 is none).
func WithTimeout(d time.Duration) ClientOption { return func(c *clientConfig) { c.timeout = d } }

// WithTransport sets the base transport (default: a clone of
// http.DefaultTransport with 10s dial and TLS handshake timeouts).
func WithTransport(rt http.RoundTripper) ClientOption {
	return func(c *clientConfig) { c.transport = rt }
}

// WithTracerProvider sets the tracer provider (default: the global one).
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(c *clientConfig) { c.tp = tp }
}

// WithPropagator sets the propagator injecting the trace context into
// requests (default: the global one).
func WithPropagator(p propagation.TextMapPropagator) ClientOption {
	return func(c *clientConfig) { c.prop = p }
}

// WithRegisterer records the client's RED metrics in reg:
// http_client_requests_total and http_client_request_duration_seconds by
// client, method and code ("error" when no response came back).
func WithRegisterer(reg prometheus.Registerer) ClientOption {
	return func(c *clientConfig) { c.reg = reg }
}

// WithBreaker sends every request through b: transport errors and 5xx
// responses count as failures (a 5xx is still returned to the caller), and
// an open circuit fails requests at once without sending them.
func WithBreaker(b Breaker) ClientOption { return func(c *clientConfig) { c.breaker = b } }

// NewClient returns an *http.Client that traces every request (a client span
// through otelhttp, the trace context injected into the headers), with
// timeouts, optional RED metrics and an optional circuit breaker.
func NewClient(opts ...ClientOption) *http.Client {
	c := clientConfig{name: "default", timeout: 30 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	base := c.transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.TLSHandshakeTimeout = 10 * time.Second
		t.MaxIdleConnsPerHost = 32
		base = t
	}
	// Our own RED metrics replace otelhttp's OTel metrics.
	otelOpts := []otelhttp.Option{
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		// Semantic conventions: the client span is named after the method.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return spanName(r.Method, "") }),
	}
	if c.tp != nil {
		otelOpts = append(otelOpts, otelhttp.WithTracerProvider(c.tp))
	}
	if c.prop != nil {
		otelOpts = append(otelOpts, otelhttp.WithPropagators(c.prop))
	}
	var rt http.RoundTripper = otelhttp.NewTransport(base, otelOpts...)
	if c.breaker != nil {
		rt = &breakerTransport{next: rt, b: c.breaker}
	}
	if c.reg != nil {
		if m, err := newClientMetrics(c.reg); err == nil {
			rt = &metricsTransport{next: rt, m: m, name: c.name}
		}
	}
	return &http.Client{Transport: rt, Timeout: c.timeout}
}

type clientMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newClientMetrics(reg prometheus.Registerer) (*clientMetrics, error) {
	labels := []string{"client", "method", "code"}
	m := &clientMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_client_requests_total",
			Help: "HTTP client requests, by client, method and status code (error: no response).",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_client_request_duration_seconds",
			Help:    "Time to the response headers of HTTP client requests, by client, method and status code.",
			Buckets: durationBuckets,
		}, labels),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

type metricsTransport struct {
	next http.RoundTripper
	m    *clientMetrics
	name string
}

func (t *metricsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	method := standardMethod(req.Method)
	if req.Method == "" {
		method = http.MethodGet
	} else if method == "" {
		method = "_OTHER"
	}
	t.m.requests.WithLabelValues(t.name, method, code).Inc()
	t.m.duration.WithLabelValues(t.name, method, code).Observe(time.Since(start).Seconds())
	return resp, err
}

// errServerStatus marks a 5xx as a failure for the breaker.
var errServerStatus = errors.New("fxhttp: server error status")

type breakerTransport struct {
	next http.RoundTripper
	b    Breaker
}

func (t *breakerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var (
		resp *http.Response
		ran  bool
	)
	err := t.b.Execute(func() error {
		ran = true
		var err error
		resp, err = t.next.RoundTrip(req) //nolint:bodyclose // returned to the caller below, or closed there when the call failed
		if err != nil {
			return err
		}
		if resp.StatusCode >= 500 {
			return errServerStatus
		}
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errServerStatus) && resp != nil:
		return resp, nil
	case !ran:
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("fxhttp: circuit breaker rejected %s %s: %w", req.Method, req.URL.Redacted(), err)
	default:
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		return nil, err
	}
}
