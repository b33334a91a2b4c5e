package fxhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxtracing"
	"github.com/martyfx/martyfx/internal/nettest"
)

func orderHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id"), "request_id": RequestID(r.Context())})
	})
}

func TestRoutesPathValuesMethodsAnd405(t *testing.T) {
	t.Parallel()
	h := start(t, nil,
		AsRoute("GET /v1/orders/{id}", orderHandler),
		AsRoute("DELETE /v1/orders/{id}", func() http.Handler { return text("deleted") }),
	)
	resp, body := h.get("/v1/orders/42")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.Contains(t, body, `"id":"42"`)

	resp, body = h.do(http.MethodDelete, h.url("/v1/orders/42"), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "deleted", body)

	resp, _ = h.do(http.MethodPost, h.url("/v1/orders/42"), strings.NewReader("{}"))
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	require.Equal(t, "DELETE, GET, HEAD", resp.Header.Get("Allow"))

	resp, _ = h.get("/v2/nothing")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "unmatched", "code": "404"}))
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "unmatched", "code": "405", "method": "POST"}))
}

func TestPanicIs500ProblemAndServerLivesOn(t *testing.T) {
	t.Parallel()
	h := start(t, nil,
		AsRoute("GET /boom", func() http.Handler {
			return http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("kaboom") })
		}),
		AsRoute("GET /ok", func() http.Handler { return text("ok") }),
	)
	resp, body := h.get("/boom", RequestIDHeader, "req-panic")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	p := problemOf(t, resp, body)
	require.Equal(t, "/boom", p.Instance)
	require.Equal(t, "req-panic", p.RequestID)
	require.Empty(t, p.Detail, "no internals leak to the client")

	resp, body = h.get("/ok")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "ok", body)

	entries := h.logs.FilterMessage("http handler panicked").All()
	require.Len(t, entries, 1)
	f := entries[0].ContextMap()
	require.Equal(t, "kaboom", f["panic"])
	require.Equal(t, "req-panic", f["request_id"])
	require.Contains(t, f["stack"], "server_test.go", "stack logged")
	require.Regexp(t, `^[0-9a-f]{32}$`, f["trace_id"])

	span := h.span("GET /boom")
	require.Equal(t, codes.Error, span.Status().Code)
	require.Contains(t, span.Status().Description, "kaboom")
	require.EqualValues(t, 500, attrs(span)["http.response.status_code"])
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "/boom", "code": "500"}))
}

func TestPanicAfterHeadersAbortsConnection(t *testing.T) {
	t.Parallel()
	h := start(t, nil, AsRoute("GET /half", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic("late")
		})
	}), AsRoute("GET /ok", func() http.Handler { return text("ok") }))
	resp, err := h.client.Get(h.url("/half"))
	require.NoError(t, err)
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Error(t, err, "the client sees a truncated response, not a silent success")
	resp2, body := h.get("/ok")
	require.Equal(t, http.StatusOK, resp2.StatusCode)
	require.Equal(t, "ok", body)
	require.Len(t, h.logs.FilterMessage("http handler panicked").All(), 1)
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	h := start(t, nil, AsRoute("GET /v1/orders/{id}", orderHandler))
	resp, body := h.get("/v1/orders/1", RequestIDHeader, "abc-123")
	require.Equal(t, "abc-123", resp.Header.Get(RequestIDHeader))
	require.Contains(t, body, `"request_id":"abc-123"`, "the handler sees it through RequestID(ctx)")

	resp, body = h.get("/v1/orders/2")
	gen := resp.Header.Get(RequestIDHeader)
	require.Regexp(t, `^[0-9a-f]{32}$`, gen)
	require.Contains(t, body, gen)

	resp, _ = h.get("/v1/orders/3", RequestIDHeader, strings.Repeat("x", 200))
	require.Regexp(t, `^[0-9a-f]{32}$`, resp.Header.Get(RequestIDHeader), "an oversized id is replaced")
	resp, _ = h.get("/v1/orders/4", RequestIDHeader, "has space")
	require.Regexp(t, `^[0-9a-f]{32}$`, resp.Header.Get(RequestIDHeader), "an id with spaces is replaced")

	var ids []any
	for _, e := range h.accessLogs() {
		ids = append(ids, e["request_id"])
	}
	require.Contains(t, ids, "abc-123")
	require.Contains(t, ids, gen)
	var spanIDs []any
	for _, s := range h.spans.Ended() {
		spanIDs = append(spanIDs, attrs(s)["http.request.id"])
	}
	require.Contains(t, spanIDs, "abc-123")
	require.Contains(t, spanIDs, gen)
}

func TestTracingSpanNameAttributesPropagationAndFilter(t *testing.T) {
	t.Parallel()
	h := start(t, nil,
		AsRoute("GET /v1/orders/{id}", orderHandler),
		AsRoute("/any/{id}", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(w, r.Body) })
		}),
		AsRoute("GET /boom", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, errors.New("db down")) })
		}),
		AsAdminRoute("GET /livez", func() http.Handler { return text("ok") }),
		AsAdminRoute("GET /metrics", func() http.Handler { return text("# metrics") }),
	)
	parent := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	resp, _ := h.get("/v1/orders/7", "traceparent", parent, "User-Agent", "tester/1")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	s := h.span("GET /v1/orders/{id}")
	require.Equal(t, trace.SpanKindServer, s.SpanKind())
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", s.SpanContext().TraceID().String(), "trace context extracted")
	require.Equal(t, "b7ad6b7169203331", s.Parent().SpanID().String())
	require.True(t, s.Parent().IsRemote())
	a := attrs(s)
	port := h.srv.Addr()[strings.LastIndexByte(h.srv.Addr(), ':')+1:]
	require.Equal(t, "GET", a["http.request.method"])
	require.Equal(t, "/v1/orders/{id}", a["http.route"])
	require.Equal(t, "/v1/orders/7", a["url.path"])
	require.Equal(t, "http", a["url.scheme"])
	require.Equal(t, "127.0.0.1", a["server.address"])
	require.Equal(t, port, fmt.Sprint(a["server.port"]))
	require.Equal(t, "127.0.0.1", a["network.peer.address"])
	require.Equal(t, "127.0.0.1", a["client.address"])
	require.Equal(t, "tester/1", a["user_agent.original"])
	require.Equal(t, "1.1", a["network.protocol.version"])
	require.EqualValues(t, 200, a["http.response.status_code"])
	require.Greater(t, a["http.response.body.size"], int64(0))
	require.Equal(t, codes.Unset, s.Status().Code)

	// A pattern without a method: the span is named after the request's method.
	h.do(http.MethodPut, h.url("/any/1"), strings.NewReader("x"))
	s = h.span("PUT /any/{id}")
	require.EqualValues(t, 1, attrs(s)["http.request.body.size"])

	// A 5xx marks the span as an error and records the error.
	h.get("/boom")
	s = h.span("GET /boom")
	require.Equal(t, codes.Error, s.Status().Code)
	require.NotEmpty(t, s.Events(), "WriteError records the error on the span")
	require.Equal(t, "db down", s.Status().Description)

	// Unmatched requests are traced under the bare method.
	h.get("/nowhere")
	require.NotContains(t, attrs(h.span("GET")), "http.route")

	// Probes and scrapes are neither traced nor access-logged.
	before := len(h.spans.Ended())
	logsBefore := len(h.accessLogs())
	for _, p := range []string{"/livez", "/metrics"} {
		resp, err := h.client.Get("http://" + h.srv.AdminAddr() + p)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.Len(t, h.spans.Ended(), before)
	require.Len(t, h.accessLogs(), logsBefore)
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"server": "admin", "route": "/livez"}), "still counted")
}

func TestREDMetricsLabelledByRoutePattern(t *testing.T) {
	t.Parallel()
	h := start(t, nil, AsRoute("GET /v1/orders/{id}", orderHandler))
	for i := range 3 {
		resp, _ := h.get(fmt.Sprintf("/v1/orders/%d", i))
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	labels := map[string]string{"server": "api", "method": "GET", "route": "/v1/orders/{id}", "code": "200"}
	c := h.metric("http_server_requests_total", labels)
	require.NotNil(t, c)
	require.EqualValues(t, 3, c.GetCounter().GetValue())
	hist := h.metric("http_server_request_duration_seconds", labels)
	require.NotNil(t, hist)
	require.EqualValues(t, 3, hist.GetHistogram().GetSampleCount())
	require.Greater(t, hist.GetHistogram().GetSampleSum(), 0.0)
	for _, route := range h.labelValues("http_server_requests_total", "route") {
		require.NotRegexp(t, `/v1/orders/\d`, route, "never the raw path")
	}
	g := h.metric("http_server_requests_in_flight", map[string]string{"server": "api"})
	require.NotNil(t, g)
	require.EqualValues(t, 0, g.GetGauge().GetValue())

	// Arbitrary methods collapse into _OTHER: no label explosion.
	h.do("FOOBAR", h.url("/v1/orders/1"), nil)
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"method": "_OTHER"}))
	require.NotContains(t, h.labelValues("http_server_requests_total", "method"), "FOOBAR")
}

func TestAccessLogModes(t *testing.T) {
	t.Parallel()
	h := start(t, nil, AsRoute("GET /v1/orders/{id}", orderHandler))
	resp, body := h.get("/v1/orders/5", "traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	entries := h.logs.FilterMessage("http request").All()
	require.Len(t, entries, 1)
	require.Equal(t, zap.InfoLevel, entries[0].Level)
	f := entries[0].ContextMap()
	require.Equal(t, "GET", f["method"])
	require.Equal(t, "/v1/orders/5", f["path"])
	require.Equal(t, "/v1/orders/{id}", f["route"])
	require.EqualValues(t, 200, f["status"])
	require.EqualValues(t, len(body), f["bytes"])
	require.Greater(t, f["duration"], time.Duration(0))
	require.Equal(t, resp.Header.Get(RequestIDHeader), f["request_id"])
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", f["trace_id"])
	require.Regexp(t, `^[0-9a-f]{16}$`, f["span_id"])

	off := start(t, []string{"MARTY_HTTP_ACCESS_LOG=off"}, AsRoute("GET /v1/orders/{id}", orderHandler))
	off.get("/v1/orders/1")
	require.Empty(t, off.accessLogs())

	sampled := start(t, []string{"MARTY_HTTP_ACCESS_LOG=sampled", "MARTY_HTTP_ACCESS_LOG_RATIO=0"},
		AsRoute("GET /v1/orders/{id}", orderHandler),
		AsRoute("GET /fail", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, errors.New("db down")) })
		}))
	for range 5 {
		sampled.get("/v1/orders/1")
	}
	sampled.get("/fail")
	logs := sampled.accessLogs()
	require.Len(t, logs, 1, "ratio 0 logs only the 5xx")
	require.EqualValues(t, 500, logs[0]["status"])
	require.Equal(t, "db down", logs[0]["error"], "the 5xx's error is in the log, not in the response")

	all := start(t, []string{"MARTY_HTTP_ACCESS_LOG=sampled", "MARTY_HTTP_ACCESS_LOG_RATIO=1"}, AsRoute("GET /v1/orders/{id}", orderHandler))
	for range 3 {
		all.get("/v1/orders/1")
	}
	require.Len(t, all.accessLogs(), 3)
}

func TestBodyLimit413(t *testing.T) {
	t.Parallel()
	var readErr atomic.Value
	h := start(t, []string{"MARTY_HTTP_MAX_BODY_BYTES=16"},
		AsRoute("POST /echo", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, err := io.ReadAll(r.Body)
				if err != nil {
					readErr.Store(err)
					WriteError(w, r, err)
					return
				}
				_, _ = w.Write(b)
			})
		}),
		AsRoute("POST /json", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var v map[string]any
				if err := DecodeJSON(w, r, &v); err != nil {
					WriteError(w, r, err)
					return
				}
				WriteJSON(w, http.StatusOK, v)
			})
		}),
	)
	resp, body := h.do(http.MethodPost, h.url("/echo"), strings.NewReader("small"))
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "small", body)

	// Declared too large: refused before the handler runs.
	resp, body = h.do(http.MethodPost, h.url("/echo"), strings.NewReader(strings.Repeat("a", 100)))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Contains(t, problemOf(t, resp, body).Detail, "larger than 16 bytes")
	require.Nil(t, readErr.Load(), "the handler did not run")

	// Streamed (no Content-Length): cut while reading.
	resp, body = h.do(http.MethodPost, h.url("/echo"), io.MultiReader(strings.NewReader(strings.Repeat("b", 100))))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, body)
	var mbe *http.MaxBytesError
	require.ErrorAs(t, readErr.Load().(error), &mbe)

	resp, body = h.do(http.MethodPost, h.url("/json"), io.MultiReader(strings.NewReader(`{"a":"`+strings.Repeat("c", 100)+`"}`)))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Equal(t, "body is larger than 16 bytes", problemOf(t, resp, body).Detail)
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "/json", "code": "413"}))
}

// A body past the limit is 413 whether its length was declared or it came
// chunked, whatever the handler makes of the read error: a 400 of its own
// (grpc-gateway answers InvalidArgument), a 500, or ignoring it. The
// handler's own body is not sent.
func TestBodyLimitChunkedIs413WhateverTheHandlerAnswers(t *testing.T) {
	t.Parallel()
	var ran atomic.Int64
	reads := func(answer func(w http.ResponseWriter, r *http.Request, err error)) func() http.Handler {
		return func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran.Add(1)
				_, err := io.ReadAll(r.Body)
				answer(w, r, err)
			})
		}
	}
	h := start(t, []string{"MARTY_HTTP_MAX_BODY_BYTES=16"},
		AsRoute("POST /400", reads(func(w http.ResponseWriter, _ *http.Request, err error) {
			if err != nil {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "27")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"code":3,"message":"bad"}`+"\n")
				return
			}
			_, _ = io.WriteString(w, "ok")
		})),
		AsRoute("POST /500", reads(func(w http.ResponseWriter, _ *http.Request, err error) {
			if err != nil {
				http.Error(w, "read failed: "+err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = io.WriteString(w, "ok")
		})),
		AsRoute("POST /ignores", reads(func(w http.ResponseWriter, _ *http.Request, _ error) {
			_, _ = io.WriteString(w, "ok")
		})),
		AsRoute("POST /flushes", reads(func(w http.ResponseWriter, _ *http.Request, _ error) {
			_ = http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "ok")
		})),
	)
	for _, route := range []string{"/400", "/500", "/ignores", "/flushes"} {
		for _, chunked := range []bool{false, true} {
			var body io.Reader = strings.NewReader(strings.Repeat("x", 100))
			if chunked {
				body = io.MultiReader(body) // no length: sent chunked
			}
			req, err := http.NewRequest(http.MethodPost, h.url(route), body)
			require.NoError(t, err)
			before := ran.Load()
			resp, err := h.client.Do(req)
			require.NoError(t, err)
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s chunked=%v: %s", route, chunked, b)
			p := problemOf(t, replyOf(resp), string(b))
			require.Equal(t, "body is larger than 16 bytes", p.Detail)
			require.Equal(t, route, p.Instance)
			require.Equal(t, resp.Header.Get(RequestIDHeader), p.RequestID)
			require.NotContains(t, string(b), "ok")
			require.NotContains(t, string(b), `"message":"bad"`) // the handler's answer (a request id may hold "bad": hex)
			// A declared length is refused before the handler runs; a
			// chunked body only while the handler reads it.
			require.Equal(t, chunked, ran.Load() == before+1, "%s chunked=%v: handler ran", route, chunked)
		}
		// Within the limit, chunked or not, the handler answers.
		resp, body := h.do(http.MethodPost, h.url(route), io.MultiReader(strings.NewReader("small")))
		require.Equal(t, http.StatusOK, resp.StatusCode, route)
		require.Equal(t, "ok", body)
	}
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "/400", "code": "413"}))
	require.Nil(t, h.metric("http_server_requests_total", map[string]string{"route": "/400", "code": "400"}))

	// A handler that answered before reading keeps its answer: the status
	// is out already.
	early := start(t, []string{"MARTY_HTTP_MAX_BODY_BYTES=16"}, AsRoute("POST /early", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			_, err := io.ReadAll(r.Body)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				_, _ = io.WriteString(w, "cut")
			}
		})
	}))
	resp, body := early.do(http.MethodPost, early.url("/early"), io.MultiReader(strings.NewReader(strings.Repeat("x", 100))))
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Equal(t, "cut", body)
}

func TestGracefulStopCompletesInFlightAndRefusesNew(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	h := start(t, nil, AsRoute("GET /slow", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			_, _ = io.WriteString(w, "done")
		})
	}))
	addr := h.srv.Addr()
	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := h.client.Get("http://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{resp.StatusCode, string(b), err}
	}()
	<-entered

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stopped <- h.app.Stop(ctx)
	}()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 3*time.Second, 10*time.Millisecond, "new connections are refused once Stop begins")
	require.True(t, h.stop.Begun(), "readiness went NOT_SERVING")
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) with a request in flight", err)
	default:
	}
	close(release)
	r := <-got
	require.NoError(t, r.err)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "done", r.body)
	require.NoError(t, <-stopped)
}

func TestStopDeadlineClosesConnections(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	release := make(chan struct{})
	h := start(t, []string{"MARTY_HTTP_DRAIN_DELAY=50ms"}, AsRoute("GET /stuck", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
		})
	}))
	defer close(release)
	errc := make(chan error, 1)
	go func() {
		resp, err := h.client.Get(h.url("/stuck"))
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	// The handler never returns by itself: Stop returning the deadline's
	// error is Stop honouring the deadline.
	err := h.srv.Stop(ctx) // the OnStop hook (fx's Stop returns the bare deadline error)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "fxhttp: graceful shutdown of the api server on "+h.srv.Addr())
	require.Error(t, <-errc, "the stuck connection was closed")
}

func TestPortInUseFailsStartWithAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	addr := ln.Addr().String()
	_, err = newApp(t, []string{"MARTY_HTTP_ADDR=" + addr})
	require.Error(t, err)
	require.Contains(t, err.Error(), "fxhttp: listen on "+addr+" for the api server")
	require.Contains(t, err.Error(), "address already in use")

	// The admin port in use: the public listener opened first is closed again.
	_, err = newApp(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=" + addr})
	require.ErrorContains(t, err, "fxhttp: listen on "+addr+" for the admin server")
}

func TestAdminServerServesAdminRoutes(t *testing.T) {
	t.Parallel()
	h := start(t, nil,
		AsRoute("GET /v1/hello", func() http.Handler { return text("public") }),
		AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }),
	)
	require.NotEqual(t, h.srv.Addr(), h.srv.AdminAddr(), "port 0 twice gives two servers")
	resp, err := h.client.Get("http://" + h.srv.AdminAddr() + "/livez")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "alive", string(b))
	pub, _ := h.get("/livez")
	require.Equal(t, http.StatusNotFound, pub.StatusCode, "admin routes are not on the public server")
	resp, err = h.client.Get("http://" + h.srv.AdminAddr() + "/v1/hello")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Same address: one server for both.
	port := strconv.Itoa(nettest.FreePort(t))
	addr := "127.0.0.1:" + port
	shared := start(t, []string{"MARTY_HTTP_ADDR=" + addr, "MARTY_HTTP_ADMIN_ADDR=" + addr},
		AsRoute("GET /v1/hello", func() http.Handler { return text("public") }),
		AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }),
	)
	require.Equal(t, addr, shared.srv.AdminAddr())
	_, body := shared.get("/livez")
	require.Equal(t, "alive", body)
	_, body = shared.get("/v1/hello")
	require.Equal(t, "public", body)

	// Admin disabled: only the public server.
	noAdmin := start(t, []string{"MARTY_HTTP_ADMIN_ADDR="}, AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }))
	require.Empty(t, noAdmin.srv.AdminAddr())
	require.Len(t, noAdmin.logs.FilterMessageSnippet("admin server disabled").All(), 1)

	// Public disabled: only the admin server.
	adminOnly := start(t, []string{"MARTY_HTTP_ADDR="}, AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }))
	require.Empty(t, adminOnly.srv.Addr())
	require.NotEmpty(t, adminOnly.srv.AdminAddr())
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{
		"MARTY_HTTP_ADDR=8080":                 `fxcore: invalid MARTY_HTTP_ADDR="8080": want host:port`,
		"MARTY_HTTP_ADMIN_ADDR=nohost":         `fxcore: invalid MARTY_HTTP_ADMIN_ADDR="nohost"`,
		"MARTY_HTTP_READ_TIMEOUT=soon":         `MARTY_HTTP_READ_TIMEOUT="soon"`,
		"MARTY_HTTP_WRITE_TIMEOUT=-1s":         `fxcore: invalid MARTY_HTTP_WRITE_TIMEOUT="-1s": want a duration >= 0`,
		"MARTY_HTTP_READ_HEADER_TIMEOUT=0s":    `fxcore: invalid MARTY_HTTP_READ_HEADER_TIMEOUT="0s"`,
		"MARTY_HTTP_MAX_HEADER_BYTES=0":        `fxcore: invalid MARTY_HTTP_MAX_HEADER_BYTES=0`,
		"MARTY_HTTP_MAX_BODY_BYTES=-5":         `fxcore: invalid MARTY_HTTP_MAX_BODY_BYTES=-5`,
		"MARTY_HTTP_ACCESS_LOG=loud":           `fxcore: invalid MARTY_HTTP_ACCESS_LOG="loud": want one of "all", "sampled", "off"`,
		"MARTY_HTTP_ACCESS_LOG_RATIO=2":        `fxcore: invalid MARTY_HTTP_ACCESS_LOG_RATIO=2`,
		"MARTY_HTTP_TLS_KEY_FILE=/tmp/key.pem": `MARTY_HTTP_TLS_CERT_FILE`,
		"MARTY_HTTP_H2C=maybe":                 `MARTY_HTTP_H2C="maybe"`,
	} {
		_, err := newApp(t, []string{env})
		require.Error(t, err, env)
		require.Contains(t, err.Error(), want, env)
	}
}

func TestServeErrorAfterStartShutsTheAppDown(t *testing.T) {
	t.Parallel()
	h := start(t, nil)
	// The listener dies under the server: Serve fails with a real error.
	require.NoError(t, h.srv.api.ln.Close())
	select {
	case sig := <-h.app.Wait():
		require.Equal(t, 1, sig.ExitCode)
	case <-time.After(5 * time.Second):
		t.Fatal("the app was not asked to shut down")
	}
	require.Len(t, h.logs.FilterMessageSnippet("failed; shutting down").All(), 1)
}

func TestH2C(t *testing.T) {
	t.Parallel()
	h := start(t, nil, AsRoute("GET /proto", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(h.url("/proto"))
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "HTTP/2.0", string(b))
	require.Equal(t, "2", attrs(h.span("GET /proto"))["network.protocol.version"])

	off := start(t, []string{"MARTY_HTTP_H2C=false"}, AsRoute("GET /proto", func() http.Handler { return text("x") }))
	tr2 := &http.Transport{Protocols: &p}
	defer tr2.CloseIdleConnections()
	resp, err = (&http.Client{Transport: tr2}).Get(off.url("/proto"))
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "h2c is refused when disabled")
}

func TestWithoutFx(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", ""
	s, err := NewServer(cfg, ServerOptions{Routes: []Route{{Pattern: "GET /x", Handler: text("plain")}}})
	require.NoError(t, err)
	require.NoError(t, s.Start(context.Background()))
	resp, err := http.Get("http://" + s.Addr() + "/x")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "plain", string(b))
	http.DefaultClient.CloseIdleConnections()
	require.NoError(t, s.Stop(context.Background()))
	require.NoError(t, s.Stop(context.Background()), "Stop is idempotent")
}

func TestDrainDelayServesAfterNotReadyThenStops(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_HTTP_DRAIN_DELAY=400ms"}, AsRoute("GET /ok", func() http.Handler { return text("ok") }))
	notReady := make(chan struct{})
	h.stop.OnBegin(func() { close(notReady) })
	began := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- h.app.Stop(context.Background()) }()
	<-notReady
	resp, body := h.get("/ok")
	require.Equal(t, http.StatusOK, resp.StatusCode, "still serving during the drain delay")
	require.Equal(t, "ok", body)
	require.NoError(t, <-stopped)
	require.GreaterOrEqual(t, time.Since(began), 400*time.Millisecond)
	_, err := net.DialTimeout("tcp", h.srv.Addr(), time.Second)
	require.Error(t, err, "closed after the drain")
}

func TestConfigReplacedInTheGraph(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr, cfg.AccessLog = "127.0.0.1:0", "", AccessLogOff
	h := start(t, nil, fx.Replace(cfg), AsRoute("GET /x", func() http.Handler { return text("x") }))
	require.Empty(t, h.srv.AdminAddr())
	resp, body := h.get("/x")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "x", body)
	require.Empty(t, h.accessLogs())
}

func TestResponseWriterKeepsFlushHijackAndSendfile(t *testing.T) {
	t.Parallel()
	content := strings.Repeat("0123456789", 1000)
	h := start(t, nil,
		AsRoute("GET /stream", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rc := http.NewResponseController(w)
				require.NoError(t, rc.SetWriteDeadline(time.Now().Add(5*time.Second)))
				_, _ = io.WriteString(w, "a")
				require.NoError(t, rc.Flush())
				_, _ = io.WriteString(w, "b")
			})
		}),
		AsRoute("GET /hijack", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, buf, err := w.(http.Hijacker).Hijack()
				require.NoError(t, err)
				defer conn.Close()
				_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nraw ok")
				_ = buf.Flush()
			})
		}),
		AsRoute("GET /file", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.ServeContent(w, r, "f.txt", time.Time{}, strings.NewReader(content))
			})
		}),
	)
	_, body := h.get("/stream")
	require.Equal(t, "ab", body)
	_, body = h.get("/hijack")
	require.Equal(t, "raw ok", body)
	resp, body := h.get("/file")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, content, body)
	// The body went out before the handler returned: its log line may lag.
	var fileLog map[string]any
	require.Eventually(t, func() bool {
		for _, e := range h.accessLogs() {
			if e["route"] == "/file" {
				fileLog = e
			}
		}
		return fileLog != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.EqualValues(t, len(content), fileLog["bytes"], "bytes counted through ReadFrom")
	// The hijacking handler may still be returning after its client is done.
	require.Eventually(t, func() bool {
		return h.metric("http_server_requests_total", map[string]string{"route": "/hijack", "code": "101"}) != nil
	}, 5*time.Second, 10*time.Millisecond)
}

func TestWithFxtracingProvider(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	src, err := fxcore.NewSourceFrom("", []string{
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=", "OTEL_TRACES_EXPORTER=none", "MARTY_LOG_LEVEL=error",
	})
	require.NoError(t, err)
	var srv *Server
	app := fx.New(fxcore.Module, fxtracing.Module, Module, fx.NopLogger, fx.Replace(src),
		fxtracing.AsSpanProcessor(rec),
		AsRoute("GET /v1/orders/{id}", orderHandler),
		fx.Populate(&srv))
	require.NoError(t, app.Start(context.Background()))
	defer func() { require.NoError(t, app.Stop(context.Background())) }()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://" + srv.Addr() + "/v1/orders/9")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, rec.Ended(), 1)
	require.Equal(t, "GET /v1/orders/{id}", rec.Ended()[0].Name())
}
