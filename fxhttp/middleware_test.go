package fxhttp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// mark is middleware adding what it saw to the X-Trail response header:
// whether the request has an id and a span, and its pattern.
func mark(name string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			traced := trace.SpanFromContext(r.Context()).SpanContext().IsValid()
			w.Header().Add("X-Trail", fmt.Sprintf("%s(id=%t,span=%t,pattern=%s)", name, RequestID(r.Context()) != "", traced, r.Pattern))
			next.ServeHTTP(w, r)
		})
	}
}

func TestUserMiddlewareOrder(t *testing.T) {
	t.Parallel()
	h := start(t, nil,
		AsRoute("GET /v1/orders/{id}", orderHandler),
		AsMiddleware(func() func(http.Handler) http.Handler { return mark("inner2") }, 20),
		AsMiddleware(mark("outer2"), -1),
		AsMiddleware(mark("outer1"), -10),
		AsMiddleware(func(log *zap.Logger) func(http.Handler) http.Handler { return mark("inner1") }, 10),
	)
	// Negative orders run inside the built-in stack (request id, span)
	// before routing; the others after it, with the matched pattern.
	resp, _ := h.get("/v1/orders/1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, []string{
		"outer1(id=true,span=true,pattern=)",
		"outer2(id=true,span=true,pattern=)",
		"inner1(id=true,span=true,pattern=GET /v1/orders/{id})",
		"inner2(id=true,span=true,pattern=GET /v1/orders/{id})",
	}, resp.Header.Values("X-Trail"))
	// The route still gets its label although outer middleware ran first.
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "/v1/orders/{id}", "code": "200"}))

	// A request the router refuses (404, 405) meets only the negative
	// orders: the others run after the routing checks.
	for _, req := range []struct{ method, path string }{{"GET", "/nowhere"}, {"POST", "/v1/orders/1"}} {
		resp, _ = h.do(req.method, h.url(req.path), nil)
		require.Contains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, resp.StatusCode)
		require.Equal(t, []string{"outer1(id=true,span=true,pattern=)", "outer2(id=true,span=true,pattern=)"},
			resp.Header.Values("X-Trail"), req)
	}

	_, err := newApp(t, nil, AsMiddleware(func() string { return "no" }, 1))
	require.ErrorContains(t, err, "fxhttp.AsMiddleware(order 1)")
}

func TestNegativeOrderMiddlewareIsRecoveredAndTraced(t *testing.T) {
	t.Parallel()
	var sawSpan bool
	h := start(t, nil,
		AsRoute("GET /ok", func() http.Handler { return text("ok") }),
		AsMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sawSpan = trace.SpanFromContext(r.Context()).SpanContext().IsValid()
				if r.URL.Query().Has("boom") {
					panic("middleware kaboom")
				}
				next.ServeHTTP(w, r)
			})
		}, -1),
	)
	resp, body := h.get("/ok?boom", RequestIDHeader, "req-mw")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	require.Equal(t, "req-mw", problemOf(t, resp, body).RequestID)
	require.True(t, sawSpan, "the middleware runs inside the request's span")

	entries := h.logs.FilterMessage("http handler panicked").All()
	require.Len(t, entries, 1)
	require.Equal(t, "middleware kaboom", entries[0].ContextMap()["panic"])
	span := h.span("GET")
	require.Equal(t, codes.Error, span.Status().Code)
	require.Contains(t, span.Status().Description, "middleware kaboom")
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "unmatched", "code": "500"}))
	require.Len(t, h.accessLogs(), 1, "the panicking request is logged")

	resp, body = h.get("/ok")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the server lives on")
	require.Equal(t, "ok", body)
}

func TestRoutePatternErrorsNameTheRoutes(t *testing.T) {
	_, err := newApp(t, nil,
		AsRoute("GET /v1/orders/{id}", orderHandler),
		AsRoute("GET /v1/orders/{name}", orderHandler),
	)
	require.ErrorContains(t, err, `fxhttp: route "GET /v1/orders/{name}" conflicts with route "GET /v1/orders/{id}"`)
	require.NotContains(t, err.Error(), "registered at")

	_, err = newApp(t, nil, AsRoute("GET /x", orderHandler), AsRoute("GET /x", orderHandler))
	require.ErrorContains(t, err, `fxhttp: route "GET /x" is registered twice`)

	_, err = newApp(t, nil, AsRoute("GET /x/{", orderHandler))
	require.ErrorContains(t, err, `fxhttp: route "GET /x/{" is not a valid pattern`)

	// An admin route sharing the public server conflicts with public routes too.
	_, err = newApp(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:18080", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:18080"},
		AsRoute("GET /metrics", orderHandler), AsAdminRoute("GET /metrics", orderHandler))
	require.ErrorContains(t, err, `fxhttp: route "GET /metrics" is registered twice`)
	_, err = newApp(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:18080", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:18080"},
		AsRoute("GET /a/{x}", orderHandler), AsAdminRoute("GET /{y}/b", orderHandler))
	require.ErrorContains(t, err, `fxhttp: route "GET /{y}/b" conflicts with route "GET /a/{x}"`)

	_, err = newApp(t, nil, AsRoute("GET /x", func() int { return 1 }))
	require.ErrorContains(t, err, `fxhttp.AsRoute("GET /x")`)
}

func TestNewMuxPatternErrors(t *testing.T) {
	t.Parallel()
	h := text("x")
	routes := func(patterns ...string) []Route {
		var rs []Route
		for _, p := range patterns {
			rs = append(rs, Route{Pattern: p, Handler: h})
		}
		return rs
	}
	for _, c := range []struct {
		routes []Route
		want   string
	}{
		{routes("GET /a", "/b", "GET /a"), `fxhttp: route "GET /a" is registered twice`},
		{routes("GET /a/{x}", "GET /b", "GET /a/{y}"), `fxhttp: route "GET /a/{y}" conflicts with route "GET /a/{x}": `},
		{routes("GET /a/{x}/b", "GET /a/c/{y}"), `fxhttp: route "GET /a/c/{y}" conflicts with route "GET /a/{x}/b": `},
		{routes("/a", "GET a/b/{"), `fxhttp: route "GET a/b/{" is not a valid pattern (see net/http.ServeMux): `},
		{routes("GET /x/{a}/{a}"), `fxhttp: route "GET /x/{a}/{a}" is not a valid pattern`},
		{routes(""), `fxhttp: route "" is not a valid pattern`},
		{[]Route{{Pattern: "GET /nil"}}, `fxhttp: route "GET /nil" has a nil handler`},
	} {
		_, _, err := newMux(c.routes)
		require.ErrorContains(t, err, c.want)
		require.NotContains(t, err.Error(), "registered at", "nothing of ServeMux's conflict text")
	}
	// More specific patterns do not conflict.
	mux, patterns, err := newMux(routes("/", "GET /a/{x}", "GET /a/b", "POST /a/b", "example.com/a"))
	require.NoError(t, err)
	require.NotNil(t, mux)
	require.Len(t, patterns, 5)
}

func TestRouteLabelIsTheServersMatchedPattern(t *testing.T) {
	t.Parallel()
	// A handler serving a ServeMux of its own (fxmonitor's dashboard does)
	// overwrites Request.Pattern; the label is still the route this
	// server matched, on the admin server and on the public one.
	sub := func() http.Handler {
		mux := http.NewServeMux()
		mux.Handle("GET /sub/inner/{x}", text("inner"))
		return mux
	}
	h := start(t, nil, AsRoute("/sub/", sub), AsAdminRoute("/sub/", sub))
	resp, body := h.get("/sub/inner/1")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "inner", body)
	resp, _ = h.do(http.MethodGet, "http://"+h.srv.AdminAddr()+"/sub/inner/2", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, server := range []string{"api", "admin"} {
		require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"server": server, "route": "/sub/", "code": "200"}), server)
	}
	require.NotContains(t, h.labelValues("http_server_requests_total", "route"), "unmatched")
	require.Equal(t, "/sub/", h.accessLogs()[0]["route"])
	require.Equal(t, "/sub/", attrs(h.span("GET /sub/"))["http.route"])
}

func TestSetRouteNamesTheSubRoutersRoute(t *testing.T) {
	t.Parallel()
	// A router mounted on one pattern names the route it matched.
	router := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := strings.CutPrefix(r.URL.Path, "/api/orders/")
		if !ok {
			SetRoute(r.Context(), "")
			http.NotFound(w, r)
			return
		}
		SetRoute(r.Context(), "/api/orders/{id}")
		_, _ = w.Write([]byte(id))
	})
	h := start(t, nil, AsRoute("/api/", router))
	for _, id := range []string{"1", "2"} {
		resp, body := h.get("/api/orders/" + id)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, id, body)
	}
	resp, _ := h.get("/api/nothing")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	c := h.metric("http_server_requests_total", map[string]string{"route": "/api/orders/{id}", "code": "200", "method": "GET"})
	require.NotNil(t, c)
	require.EqualValues(t, 2, c.GetCounter().GetValue())
	require.NotNil(t, h.metric("http_server_requests_total", map[string]string{"route": "unmatched", "code": "404"}))
	require.NotContains(t, h.labelValues("http_server_requests_total", "route"), "/api/")
	span := h.span("GET /api/orders/{id}")
	require.Equal(t, "/api/orders/{id}", attrs(span)["http.route"])
	logs := h.accessLogs()
	require.Len(t, logs, 3)
	require.Equal(t, "/api/orders/{id}", logs[0]["route"])
	require.Equal(t, "unmatched", logs[2]["route"])

	SetRoute(t.Context(), "/outside") // outside a request: nothing happens
}

func TestAsRoutesChecksItsConstructor(t *testing.T) {
	t.Parallel()
	for _, ctor := range []any{nil, []Route{}, func() Route { return Route{} }, func(...int) []Route { return nil },
		func() ([]Route, int) { return nil, 0 }} {
		_, err := newApp(t, nil, AsRoutes(ctor))
		require.ErrorContains(t, err, "fxhttp.AsRoutes: got ", "%T", ctor)
		require.ErrorContains(t, err, "want a constructor returning []fxhttp.Route")
	}
	_, err := newApp(t, nil, AsRoutes(func() ([]Route, error) { return nil, errors.New("no routes today") }))
	require.ErrorContains(t, err, "no routes today")

	// Routes from AsRoutes meet the pattern checks like the others.
	_, err = newApp(t, nil, AsRoute("GET /x", orderHandler),
		AsRoutes(func() []Route { return []Route{{Pattern: "GET /x", Handler: text("again")}} }))
	require.ErrorContains(t, err, `fxhttp: route "GET /x" is registered twice`)
}
