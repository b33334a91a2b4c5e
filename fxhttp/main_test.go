package fxhttp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a started app with fxcore and fxhttp, a real SDK tracer
// recording spans, a zap observer and a client on loopback.
type harness struct {
	t      *testing.T
	app    *fx.App
	srv    *Server
	reg    *prometheus.Registry
	spans  *tracetest.SpanRecorder
	logs   *observer.ObservedLogs
	client *http.Client
	stop   *fxcore.Stopping
}

func newApp(t *testing.T, env []string, opts ...fx.Option) (*harness, error) {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
	}, env...))
	require.NoError(t, err)
	h := &harness{t: t, spans: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	all := append([]fx.Option{
		fxcore.Module, Module, fx.NopLogger, fx.Replace(src),
		fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))),
		fx.Supply(fx.Annotate(propagation.TraceContext{}, fx.As(new(propagation.TextMapPropagator)))),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fx.Populate(&h.srv, &h.reg, &h.stop),
	}, opts...)
	h.app = fx.New(all...)
	if err := h.app.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.app.Start(ctx); err != nil {
		return nil, err
	}
	tr := &http.Transport{}
	h.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = h.app.Stop(ctx)
	})
	return h, nil
}

func start(t *testing.T, env []string, opts ...fx.Option) *harness {
	t.Helper()
	h, err := newApp(t, env, opts...)
	require.NoError(t, err)
	return h
}

func (h *harness) url(path string) string { return "http://" + h.srv.Addr() + path }

// reply is an answer whose body a helper already read and closed: what the
// tests look at, and no Body left to forget.
type reply struct {
	StatusCode int
	Header     http.Header
	Request    *http.Request // the last request, after redirects
}

func replyOf(resp *http.Response) reply {
	return reply{StatusCode: resp.StatusCode, Header: resp.Header, Request: resp.Request}
}

func (h *harness) do(method, url string, body io.Reader, hdr ...string) (reply, string) {
	h.t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(h.t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.client.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	return replyOf(resp), string(b)
}

func (h *harness) get(path string, hdr ...string) (reply, string) {
	h.t.Helper()
	return h.do(http.MethodGet, h.url(path), nil, hdr...)
}

func problemOf(t *testing.T, resp reply, body string) Problem {
	t.Helper()
	require.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"), body)
	var p Problem
	require.NoError(t, json.Unmarshal([]byte(body), &p), body)
	require.Equal(t, resp.StatusCode, p.Status)
	require.Equal(t, "about:blank", p.Type)
	require.Equal(t, http.StatusText(p.Status), p.Title)
	return p
}

// metric returns the series of name whose labels include want.
func (h *harness) metric(name string, want map[string]string) *dto.Metric {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	require.NoError(h.t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

// labelValues lists every value of a label across the series of name.
func (h *harness) labelValues(name, label string) []string {
	mfs, err := h.reg.Gather()
	require.NoError(h.t, err)
	var out []string
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == label {
						out = append(out, l.GetValue())
					}
				}
			}
		}
	}
	return out
}

func (h *harness) span(name string) sdktrace.ReadOnlySpan {
	h.t.Helper()
	var names []string
	for _, s := range h.spans.Ended() {
		if s.Name() == name {
			return s
		}
		names = append(names, s.Name())
	}
	h.t.Fatalf("no span %q among %s", name, strings.Join(names, ", "))
	return nil
}

func attrs(s sdktrace.ReadOnlySpan) map[string]any {
	out := map[string]any{}
	for _, kv := range s.Attributes() {
		out[string(kv.Key)] = kv.Value.AsInterface()
	}
	return out
}

// accessLogs returns the access log entries' fields.
func (h *harness) accessLogs() []map[string]any {
	var out []map[string]any
	for _, e := range h.logs.FilterMessage("http request").All() {
		out = append(out, e.ContextMap())
	}
	return out
}

// text is a handler writing a fixed body.
func text(s string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, s) }
}
