package fxgrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/internal/pkitest"
)

// registerEcho is what protoc-gen-grpc-gateway generates for
// `post: "/v1/echo" body: "*"` on Echo.Echo.
func registerEcho(_ context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error {
	client := testpb.NewEchoClient(conn)
	const method = "/martyfx.fxgrpc.testpb.Echo/Echo"
	return mux.HandlePath("POST", "/v1/echo", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		inbound, outbound := runtime.MarshalerForRequest(mux, r)
		ctx, err := runtime.AnnotateContext(r.Context(), mux, r, method, runtime.WithHTTPPathPattern("/v1/echo"))
		if err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		var req testpb.EchoRequest
		if err := inbound.NewDecoder(r.Body).Decode(&req); err != nil && !errors.Is(err, io.EOF) {
			runtime.HTTPError(ctx, mux, outbound, w, r, status.Error(codes.InvalidArgument, err.Error()))
			return
		}
		var md runtime.ServerMetadata
		res, err := client.Echo(ctx, &req, grpc.Header(&md.HeaderMD), grpc.Trailer(&md.TrailerMD))
		ctx = runtime.NewServerMetadataContext(ctx, md)
		if err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		runtime.ForwardResponseMessage(ctx, mux, outbound, w, r, res)
	})
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	res, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer res.Body.Close()
	var out map[string]any
	require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
	return res.StatusCode, out
}

func TestGatewayServesRESTThroughTheInterceptors(t *testing.T) {
	t.Parallel()
	var httpSrv *fxhttp.Server
	var g prometheus.Gatherer
	a := start(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0"},
		fxhttp.Module, fxgrpc.AsGateway(registerEcho), fx.Populate(&httpSrv, &g))
	base := "http://" + httpSrv.Addr()

	code, body := post(t, base+"/v1/echo", `{"message":"hi","repeat":2}`)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, "hihi", body["message"])

	// A gRPC error becomes its HTTP status with the google.rpc.Status body.
	code, body = post(t, base+"/v1/echo", `{"repeat":2}`)
	require.Equal(t, http.StatusBadRequest, code, "%v", body)
	require.Equal(t, float64(codes.InvalidArgument), body["code"])
	require.Contains(t, body["message"], "message: must not be empty")
	details := body["details"].([]any)
	require.Len(t, details, 1)
	require.Equal(t, "type.googleapis.com/google.rpc.BadRequest", details[0].(map[string]any)["@type"])

	code, _ = post(t, base+"/v1/echo", `{"message":"x","fail":"unavailable"}`)
	require.Equal(t, http.StatusServiceUnavailable, code)

	// The calls went through the server's chain: metrics and logs.
	ok, _ := series(t, g, "grpc_server_handled_total", map[string]string{"grpc_method": "Echo", "grpc_code": "OK"})
	require.Equal(t, 1.0, ok)
	bad, _ := series(t, g, "grpc_server_handled_total", map[string]string{"grpc_method": "Echo", "grpc_code": "InvalidArgument"})
	require.Equal(t, 1.0, bad)

	// The admin server lists the hosted services.
	res, err := http.Get("http://" + httpSrv.AdminAddr() + "/grpc/services")
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	var view struct {
		Addr     string                 `json:"addr"`
		Services []fxgrpc.ServiceStatus `json:"services"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&view))
	require.Equal(t, a.srv.Addr(), view.Addr)
	require.Equal(t, fxgrpc.Hosted(a.srv), view.Services)
}

func TestNoGatewayNoRoute(t *testing.T) {
	t.Parallel()
	// Without AsGateway nothing is mounted: the app's own "/" route works.
	var httpSrv *fxhttp.Server
	start(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0"}, fxhttp.Module,
		fxhttp.AsRoute("/", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })),
		fx.Populate(&httpSrv))
	res, err := http.Get("http://" + httpSrv.Addr() + "/anything")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusTeapot, res.StatusCode)
}

func TestGatewayOverTLS(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	var httpSrv *fxhttp.Server
	start(t, append([]string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0"}, serverTLSEnv(p)...),
		fxhttp.Module, fxgrpc.AsGateway(registerEcho), fx.Populate(&httpSrv))
	code, body := post(t, "http://"+httpSrv.Addr()+"/v1/echo", `{"message":"tls"}`)
	require.Equal(t, http.StatusOK, code, "%v", body)
	require.Equal(t, "tls", body["message"])
}

func TestGatewayRequestsAreLabelledWithTheGatewaysRoute(t *testing.T) {
	t.Parallel()
	var httpSrv *fxhttp.Server
	var g prometheus.Gatherer
	spans := tracetest.NewSpanRecorder()
	a := start(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0"},
		fxhttp.Module, fxgrpc.AsGateway(registerEcho), fx.Populate(&httpSrv, &g),
		fx.Supply(fx.Annotate(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)), fx.As(new(trace.TracerProvider)))))
	base := "http://" + httpSrv.Addr()

	code, _ := post(t, base+"/v1/echo", `{"message":"hi"}`)
	require.Equal(t, http.StatusOK, code)
	code, _ = post(t, base+"/v1/echo", `{}`)
	require.Equal(t, http.StatusBadRequest, code)
	code, _ = post(t, base+"/v1/nothing", `{}`)
	require.Equal(t, http.StatusNotFound, code)

	// Metrics: the gateway's pattern, unmatched for its 404; never the
	// mount point "/".
	for _, c := range []struct{ route, code string }{{"/v1/echo", "200"}, {"/v1/echo", "400"}, {"unmatched", "404"}} {
		n, ok := series(t, g, "http_server_requests_total", map[string]string{"server": "api", "route": c.route, "code": c.code})
		require.True(t, ok, c)
		require.Equal(t, 1.0, n, c)
	}
	_, ok := series(t, g, "http_server_requests_total", map[string]string{"route": "/"})
	require.False(t, ok, "no request is labelled with the mount point")

	// Access log lines.
	var routes []any
	for _, e := range a.logs.FilterMessage("http request").All() {
		routes = append(routes, e.ContextMap()["route"])
	}
	require.Equal(t, []any{"/v1/echo", "/v1/echo", "unmatched"}, routes)

	// The server span is named after the route and carries http.route.
	var names []string
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindServer && strings.HasPrefix(s.Name(), "POST") {
			names = append(names, s.Name())
			if s.Name() == "POST /v1/echo" {
				require.Contains(t, s.Attributes(), attribute.String("http.route", "/v1/echo"))
			}
		}
	}
	require.ElementsMatch(t, []string{"POST /v1/echo", "POST /v1/echo", "POST"}, names)
}
