package fxgrpc_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

// tracedServer serves the echo service (and health) over loopback TCP with
// the instrumentation instrument builds on a recording tracer provider, and
// returns the recorder and a client whose calls carry their trace context
// and a baggage entry.
func tracedServer(t *testing.T, instrument func(*sdktrace.TracerProvider, propagation.TextMapPropagator) []grpc.ServerOption) (*tracetest.SpanRecorder, *grpc.ClientConn, int) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	srv := grpc.NewServer(instrument(tp, prop)...)
	srv.RegisterService(&testpb.Echo_ServiceDesc, newEcho())
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop))))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
		<-done
		_ = tp.Shutdown(context.Background())
	})
	return rec, conn, lis.Addr().(*net.TCPAddr).Port
}

// serverSpan is what a server span says, for comparison.
type serverSpan struct {
	Name, Kind, Scope, ScopeVersion, Status, StatusDesc string
	Attrs                                               map[string]string
	ParentIsClient, Events                              bool
}

// callAll makes the same calls on conn: OK, UNAVAILABLE, a plain error
// (UNKNOWN), an unknown method (UNIMPLEMENTED), a server stream and a
// health check.
func callAll(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	m, _ := baggage.NewMember("tenant", "acme")
	bag, _ := baggage.New(m)
	ctx := baggage.ContextWithBaggage(ctxT(t), bag)
	c := testpb.NewEchoClient(conn)
	_, err := c.Echo(ctx, &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	_, err = c.Echo(ctx, &testpb.EchoRequest{Fail: "unavailable"})
	require.Error(t, err)
	_, err = c.Echo(ctx, &testpb.EchoRequest{Fail: "internal"})
	require.Error(t, err)
	err = conn.Invoke(ctx, "/martyfx.fxgrpc.testpb.Echo/Nope", &testpb.EchoRequest{}, &testpb.EchoResponse{})
	require.Equal(t, codes.Unimplemented, status.Code(err))
	st, err := c.EchoStream(ctx, &testpb.EchoRequest{Message: "s", Repeat: 3})
	require.NoError(t, err)
	for {
		if _, err := st.Recv(); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
	}
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
}

func serverSpans(rec *tracetest.SpanRecorder, port int) []serverSpan {
	client := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.SpanKind().String() == "client" {
			client[s.SpanContext().SpanID().String()] = true
		}
	}
	var out []serverSpan
	for _, s := range rec.Ended() {
		if s.SpanKind().String() != "server" {
			continue
		}
		a := attrs(s.Attributes())
		if a["server.port"] == strconv.Itoa(port) {
			a["server.port"] = "<port>"
		}
		out = append(out, serverSpan{
			Name: s.Name(), Kind: s.SpanKind().String(),
			Scope: s.InstrumentationScope().Name, ScopeVersion: s.InstrumentationScope().Version,
			Status: s.Status().Code.String(), StatusDesc: s.Status().Description,
			Attrs: a, ParentIsClient: client[s.Parent().SpanID().String()], Events: len(s.Events()) > 0,
		})
	}
	return out
}

// The server's tracing interceptors write the spans otelgrpc's server
// handler (with health and reflection filtered out) writes, call for call.
func TestServerSpansMatchOtelgrpc(t *testing.T) {
	t.Parallel()
	recOtel, connOtel, portOtel := tracedServer(t, func(tp *sdktrace.TracerProvider, prop propagation.TextMapPropagator) []grpc.ServerOption {
		return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), otelgrpc.WithPropagators(prop),
			otelgrpc.WithFilter(filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection.")))))}
	})
	recOurs, connOurs, portOurs := tracedServer(t, func(tp *sdktrace.TracerProvider, prop propagation.TextMapPropagator) []grpc.ServerOption {
		u, s := fxgrpc.ServerTracingInterceptors(tp, prop)
		return []grpc.ServerOption{grpc.UnaryInterceptor(u), grpc.StreamInterceptor(s)}
	})
	callAll(t, connOtel)
	callAll(t, connOurs)

	want := serverSpans(recOtel, portOtel)
	require.Len(t, want, 4, "four traced calls: health is not traced, an unknown method gets no span")
	got := serverSpans(recOurs, portOurs)
	require.Equal(t, want, got)
	for _, s := range got {
		require.True(t, s.ParentIsClient, "the caller's trace continues: %s", s.Name)
		require.Equal(t, "<port>", s.Attrs["server.port"])
	}
	require.Equal(t, "Error", got[1].Status, "UNAVAILABLE is the server's fault")
	require.Equal(t, "Unset", got[3].Status)
}

// An unsampled call gets a span that records nothing but carries the trace.
func TestUnsampledCallsContinueTheTraceWithoutRecording(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	u, _ := fxgrpc.ServerTracingInterceptors(tp, propagation.TraceContext{})
	srv := grpc.NewServer(grpc.UnaryInterceptor(u))
	srv.RegisterService(&testpb.Echo_ServiceDesc, newEcho())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	defer func() { srv.Stop(); <-done }()
	conn := dial(t, lis.Addr().String())

	// The caller's trace context, sent by hand (not sampled).
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "traceparent", "00-"+tid+"-00f067aa0ba902b7-00")
	res, err := testpb.NewEchoClient(conn).Echo(ctx, &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	require.Equal(t, tid, res.GetTraceId(), "the handler runs in the caller's trace")
	require.Empty(t, rec.Ended(), "nothing recorded")
}
