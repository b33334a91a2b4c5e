package fxhttp

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/martyfx/martyfx/internal/nettest"
)

// gobreakerAdapter is how fxmonitor's breaker satisfies Breaker.
type gobreakerAdapter struct {
	cb *gobreaker.CircuitBreaker[struct{}]
}

func (g gobreakerAdapter) Execute(fn func() error) error {
	_, err := g.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

func TestClientTracesPropagatesAndRecordsMetrics(t *testing.T) {
	var failing atomic.Bool
	var hits atomic.Int32
	srv := start(t, nil, AsRoute("GET /echo", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if failing.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, trace.SpanContextFromContext(r.Context()).TraceID().String())
		})
	}))

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reg := prometheus.NewRegistry()
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "echo",
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 2 },
		Timeout:     time.Minute,
	})
	client := NewClient(WithName("echo"), WithTimeout(5*time.Second), WithTracerProvider(tp),
		WithPropagator(propagation.TraceContext{}), WithRegisterer(reg), WithBreaker(gobreakerAdapter{cb}))
	defer client.CloseIdleConnections()

	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url("/echo"), nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parent.End()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, parent.SpanContext().TraceID().String(), string(b), "the server joined the caller's trace")

	var clientSpan sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			clientSpan = s
		}
	}
	require.NotNil(t, clientSpan)
	require.Equal(t, "GET", clientSpan.Name())
	require.Equal(t, parent.SpanContext().SpanID(), clientSpan.Parent().SpanID())
	require.EqualValues(t, 200, attrs(clientSpan)["http.response.status_code"])

	h := &harness{t: t, reg: reg}
	c := h.metric("http_client_requests_total", map[string]string{"client": "echo", "method": "GET", "code": "200"})
	require.NotNil(t, c)
	require.EqualValues(t, 1, c.GetCounter().GetValue())
	require.NotNil(t, h.metric("http_client_request_duration_seconds", map[string]string{"client": "echo", "code": "200"}))

	// Two 503s trip the breaker; the 503s still reach the caller.
	failing.Store(true)
	for range 2 {
		resp, err := client.Get(srv.url("/echo"))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	}
	before := hits.Load()
	resp, err = client.Get(srv.url("/echo"))
	if err == nil {
		resp.Body.Close()
	}
	require.ErrorIs(t, err, gobreaker.ErrOpenState)
	require.ErrorContains(t, err, "fxhttp: circuit breaker rejected GET")
	require.Equal(t, before, hits.Load(), "an open circuit does not send the request")
	require.NotNil(t, h.metric("http_client_requests_total", map[string]string{"client": "echo", "code": "error"}))

	// A dead server is an error, counted.
	dead := NewClient(WithRegisterer(reg), WithTimeout(time.Second))
	resp, err = dead.Get("http://127.0.0.1:" + strconv.Itoa(nettest.FreePort(t)) + "/")
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err)
	require.NotNil(t, h.metric("http_client_requests_total", map[string]string{"client": "default", "code": "error"}))
}
