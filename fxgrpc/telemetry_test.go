package fxgrpc_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

// series returns the value of the metric family name with exactly these
// labels (a counter's value or a histogram's count), and whether it exists.
func series(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return value(m), true
		}
	}
	return 0, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

func TestMetricsCountCallsByCode(t *testing.T) {
	t.Parallel()
	var g prometheus.Gatherer
	a := start(t, nil, fx.Populate(&g))
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	for range 2 {
		_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
		require.NoError(t, err)
	}
	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x", Fail: "panic"})
	require.Equal(t, codes.Internal, status.Code(err))

	echo := map[string]string{"grpc_service": echoService, "grpc_method": "Echo", "grpc_type": "unary"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for kk, vv := range echo {
			m[kk] = vv
		}
		return m
	}
	for code, want := range map[string]float64{"OK": 2, "InvalidArgument": 1, "Internal": 1, "NotFound": 0} {
		got, ok := series(t, g, "grpc_server_handled_total", with("grpc_code", code))
		require.True(t, ok, code)
		require.Equal(t, want, got, code)
	}
	got, ok := series(t, g, "grpc_server_started_total", echo)
	require.True(t, ok)
	require.Equal(t, 4.0, got)
	got, ok = series(t, g, "grpc_server_handling_seconds", echo)
	require.True(t, ok)
	require.Equal(t, 4.0, got)

	// InitializeMetrics: the streams have their series before any call.
	got, ok = series(t, g, "grpc_server_handled_total",
		map[string]string{"grpc_method": "EchoStream", "grpc_type": "server_stream", "grpc_code": "OK"})
	require.True(t, ok)
	require.Equal(t, 0.0, got)

	// Clients from *Clients record client metrics on the same registry.
	conn, err := a.clients.New(a.srv.Addr())
	require.NoError(t, err)
	_, err = testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	got, ok = series(t, g, "grpc_client_handled_total", with("grpc_code", "OK"))
	require.True(t, ok)
	require.Equal(t, 1.0, got)
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func TestSpansAndPropagationFromClientToServer(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	a := start(t, nil,
		fx.Provide(func() trace.TracerProvider { return tp }),
		fx.Provide(func() propagation.TextMapPropagator { return propagation.TraceContext{} }),
	)
	conn, err := a.clients.New(a.srv.Addr())
	require.NoError(t, err)

	ctx, parent := tp.Tracer("test").Start(ctxT(t), "parent")
	res, err := testpb.NewEchoClient(conn).Echo(ctx, &testpb.EchoRequest{Message: "x"})
	parent.End()
	require.NoError(t, err)
	require.Equal(t, parent.SpanContext().TraceID().String(), res.GetTraceId(), "the handler runs in the caller's trace")
	_, err = testpb.NewEchoClient(conn).Echo(ctx, &testpb.EchoRequest{})
	require.Error(t, err)
	require.Equal(t, "SERVING", healthCheck(t, dial(t, a.srv.Addr()), ""))

	var server, client []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			server = append(server, s)
		case trace.SpanKindClient:
			client = append(client, s)
		}
	}
	require.Len(t, server, 2, "health checks are not traced")
	require.Len(t, client, 2)
	srv, cli := server[0], client[0]
	require.Equal(t, "martyfx.fxgrpc.testpb.Echo/Echo", srv.Name())
	require.Equal(t, parent.SpanContext().TraceID(), srv.SpanContext().TraceID())
	require.Equal(t, cli.SpanContext().SpanID(), srv.Parent().SpanID(), "server span's parent is the client span")
	require.Equal(t, parent.SpanContext().SpanID(), cli.Parent().SpanID())
	sa := attrs(srv.Attributes())
	t.Logf("server span attributes: %v", sa)
	require.Equal(t, "martyfx.fxgrpc.testpb.Echo/Echo", sa["rpc.method"])
	require.Equal(t, "grpc", sa["rpc.system.name"])
	require.Equal(t, "OK", sa["rpc.response.status_code"])
	bad := attrs(server[1].Attributes())
	require.Equal(t, "INVALID_ARGUMENT", bad["rpc.response.status_code"])
	require.Equal(t, "martyfx.fxgrpc.testpb.Echo/Echo", attrs(cli.Attributes())["rpc.method"])
}
