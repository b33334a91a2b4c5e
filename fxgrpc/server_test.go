package fxgrpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/bufvalidate"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

func TestServiceAnswersOverTCPAndIsListed(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	addr := a.srv.Addr()
	require.True(t, strings.HasPrefix(addr, "127.0.0.1:"), addr)
	require.NotEqual(t, "127.0.0.1:0", addr)

	c := testpb.NewEchoClient(dial(t, addr))
	res, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "ab", Repeat: 2})
	require.NoError(t, err)
	require.Equal(t, "abab", res.GetMessage())

	stream, err := c.EchoStream(ctxT(t), &testpb.EchoRequest{Message: "x", Repeat: 3})
	require.NoError(t, err)
	var got []string
	for {
		m, err := stream.Recv()
		if err != nil {
			break
		}
		got = append(got, m.GetMessage())
	}
	require.Equal(t, []string{"x", "x", "x"}, got)

	require.Equal(t, []fxgrpc.ServiceStatus{{
		Name:    "martyfx.fxgrpc.testpb.Echo",
		Methods: []string{"Echo", "Check"},
		Streams: []string{"EchoStream", "Collect"},
		Health:  "SERVING",
	}}, fxgrpc.Hosted(a.srv))
}

// wrongImpl has an Echo method of the wrong type.
type wrongImpl struct{ testpb.UnimplementedEchoServer }

type notEcho struct{}

func (notEcho) Echo(string) string { return "" }

func (notEcho) Collect(grpc.ClientStreamingServer[testpb.EchoRequest, testpb.EchoResponse]) error {
	return nil
}

func TestHandlerTypeMismatchFailsStart(t *testing.T) {
	t.Parallel()
	app := fx.New(fxcore.Module, fxgrpc.Module, fx.Replace(source(t)), fx.NopLogger,
		fxgrpc.AsService(&testpb.Echo_ServiceDesc, func() *notEcho { return &notEcho{} }))
	err := app.Err()
	require.Error(t, err)
	require.ErrorContains(t, err, "*fxgrpc_test.notEcho does not implement testpb.EchoServer")
	require.ErrorContains(t, err, "method Echo has type")

	// A value (not a constructor) is checked too.
	app = fx.New(fxcore.Module, fxgrpc.Module, fx.Replace(source(t)), fx.NopLogger,
		fxgrpc.AsService(&testpb.Echo_ServiceDesc, struct{}{}))
	require.ErrorContains(t, app.Err(), "struct {} does not implement testpb.EchoServer")

	// The right type starts.
	app = fx.New(fxcore.Module, fxgrpc.Module, fx.Replace(source(t)), fx.NopLogger,
		fxgrpc.AsService(&testpb.Echo_ServiceDesc, &wrongImpl{}))
	require.NoError(t, app.Err())
}

func TestPanicAnswersInternalAndServerLivesOn(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x", Fail: "panic"})
	require.Equal(t, codes.Internal, status.Code(err), "%v", err)
	require.NotContains(t, err.Error(), "boom", "the panic value stays in the log")

	res, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "ok"})
	require.NoError(t, err)
	require.Equal(t, "ok", res.GetMessage())

	logged := a.logs.FilterMessage("grpc handler panicked").All()
	require.Len(t, logged, 1)
	fields := logged[0].ContextMap()
	require.Equal(t, "boom: x", fields["panic"])
	require.Contains(t, fields["stack"], "fxgrpc_test.(*echo).Echo")

	// The finished-call line says Internal at error level.
	calls := a.logs.FilterMessage("grpc call").Filter(func(e observer.LoggedEntry) bool {
		return e.ContextMap()["grpc.code"] == "Internal"
	}).All()
	require.Len(t, calls, 1)
	require.Equal(t, zapcore.ErrorLevel, calls[0].Level)
}

func TestValidationErrorsAreInvalidArgumentWithDetails(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Repeat: 99})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	require.Len(t, st.Details(), 1)
	br, ok := st.Details()[0].(*errdetails.BadRequest)
	require.True(t, ok, "%T", st.Details()[0])
	var fields []string
	for _, v := range br.GetFieldViolations() {
		fields = append(fields, v.GetField()+": "+v.GetDescription())
	}
	require.Equal(t, []string{"message: must not be empty", "repeat: must be between 0 and 10"}, fields)
	require.Equal(t, int64(0), a.echo.calls.Load(), "the handler never ran")

	// Streams validate every received message.
	stream, err := c.Collect(ctxT(t))
	require.NoError(t, err)
	require.NoError(t, stream.Send(&testpb.EchoRequest{Message: "ok"}))
	require.NoError(t, stream.Send(&testpb.EchoRequest{Message: ""}))
	_, err = stream.CloseAndRecv()
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, err.Error(), "message: must not be empty")
}

// Without bufvalidate.Module, buf.validate rules are not checked (the
// module links protovalidate's CEL interpreter, which not every service
// wants); with it they are, before the handler runs.
func TestProtovalidateRulesAreEnforcedWithBufvalidate(t *testing.T) {
	t.Parallel()
	plain := start(t, nil)
	_, err := testpb.NewEchoClient(dial(t, plain.srv.Addr())).Check(ctxT(t), &testpb.CheckRequest{Email: "not-an-email", Count: 11})
	require.NoError(t, err, "no MessageValidator: only Validate methods run")

	a := start(t, nil, bufvalidate.Module)
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err = c.Check(ctxT(t), &testpb.CheckRequest{Email: "not-an-email", Count: 11})
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	require.Len(t, st.Details(), 1)
	br := st.Details()[0].(*errdetails.BadRequest)
	var fields []string
	for _, v := range br.GetFieldViolations() {
		fields = append(fields, v.GetField())
		require.NotEmpty(t, v.GetDescription())
	}
	require.Equal(t, []string{"email", "count"}, fields)
	require.Equal(t, int64(0), a.echo.calls.Load())

	res, err := c.Check(ctxT(t), &testpb.CheckRequest{Email: "a@example.com", Count: 3})
	require.NoError(t, err)
	require.Equal(t, "a@example.com", res.GetMessage())
}

func TestReflectionListsServicesOutsideProduction(t *testing.T) {
	t.Parallel()
	list := func(t *testing.T, env ...string) ([]string, error) {
		a := start(t, env)
		stream, err := reflectionpb.NewServerReflectionClient(dial(t, a.srv.Addr())).ServerReflectionInfo(ctxT(t))
		require.NoError(t, err)
		// Send may see io.EOF when the server ended the stream (Unimplemented):
		// Recv then returns the status.
		_ = stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
		res, err := stream.Recv()
		if err != nil {
			return nil, err
		}
		var names []string
		for _, s := range res.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, stream.CloseSend()
	}
	names, err := list(t)
	require.NoError(t, err)
	require.Contains(t, names, "martyfx.fxgrpc.testpb.Echo")
	require.Contains(t, names, "grpc.health.v1.Health")

	_, err = list(t, "MARTY_ENV=production")
	require.Equal(t, codes.Unimplemented, status.Code(err), "%v", err)

	names, err = list(t, "MARTY_ENV=production", "MARTY_GRPC_REFLECTION=on")
	require.NoError(t, err)
	require.Contains(t, names, "martyfx.fxgrpc.testpb.Echo")
}

func TestPortInUseFailsStartNamingTheAddress(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer lis.Close()
	a := &app{}
	app := fx.New(options(t, a, []string{"MARTY_GRPC_ADDR=" + lis.Addr().String()})...)
	require.NoError(t, app.Err())
	err = app.Start(ctxT(t))
	require.ErrorContains(t, err, "fxgrpc: listen on "+lis.Addr().String())
	require.ErrorContains(t, err, "address already in use")
}

func TestBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	app := fx.New(fxcore.Module, fxgrpc.Module, fx.NopLogger, fx.Replace(source(t,
		"MARTY_GRPC_CLIENTS_ORDERS_TARGET=orders:50051", "MARTY_GRPC_CLIENTS_ORDERS_MAX_ATTEMPTS=9")))
	require.ErrorContains(t, app.Err(), `invalid MARTY_GRPC_CLIENTS_ORDERS_MAX_ATTEMPTS=9`)
	for env, want := range map[string]string{
		"MARTY_GRPC_REFLECTION=maybe":               `invalid MARTY_GRPC_REFLECTION="maybe"`,
		"MARTY_GRPC_DRAIN_DELAY=5":                  "MARTY_GRPC_DRAIN_DELAY",
		"MARTY_GRPC_LOG_OK_LEVEL=loud":              `invalid MARTY_GRPC_LOG_OK_LEVEL="loud"`,
		"MARTY_GRPC_CLIENTS_ORDERS_TARGET=":         `invalid MARTY_GRPC_CLIENTS_ORDERS_TARGET=""`,
		"MARTY_GRPC_TLS_CERT_FILE=/nonexistent.pem": "MARTY_GRPC_TLS_KEY_FILE",
		"MARTY_GRPC_TLS_CA_FILE=/ca.pem":            "MARTY_GRPC_TLS_CERT_FILE",
		"MARTY_GRPC_TLS_ENABLED=true":               "MARTY_GRPC_TLS_CERT_FILE",
	} {
		app := fx.New(fxcore.Module, fxgrpc.Module, fx.Replace(source(t, env)), fx.NopLogger)
		require.ErrorContains(t, app.Err(), want, env)
	}
	app = fx.New(fxcore.Module, fxgrpc.Module, fx.NopLogger, fx.Replace(source(t,
		"MARTY_GRPC_CLIENTS_ORDERS_TARGET=orders:50051", "MARTY_GRPC_CLIENTS_ORDERS_TLS_KEY_FILE=/k.pem")))
	require.ErrorContains(t, app.Err(), "MARTY_GRPC_CLIENTS_ORDERS_TLS_CERT_FILE")
}

func TestGracefulStopCompletesCallsInFlight(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))

	var wg sync.WaitGroup
	var unaryErr, streamErr error
	var unaryRes string
	var streamN int
	wg.Add(2)
	go func() {
		defer wg.Done()
		res, err := c.Echo(context.Background(), &testpb.EchoRequest{Message: "slow", SleepMs: 400})
		unaryErr = err
		unaryRes = res.GetMessage()
	}()
	go func() {
		defer wg.Done()
		stream, err := c.EchoStream(context.Background(), &testpb.EchoRequest{Message: "s", Repeat: 4, SleepMs: 100})
		if err != nil {
			streamErr = err
			return
		}
		for {
			if _, err := stream.Recv(); err != nil {
				if status.Code(err) != codes.OK && err.Error() != "EOF" {
					streamErr = err
				}
				return
			}
			streamN++
		}
	}()
	<-a.echo.started
	<-a.echo.started

	begun := time.Now()
	require.NoError(t, a.stop(5*time.Second))
	require.Greater(t, time.Since(begun), 250*time.Millisecond, "stop waited for the calls")
	wg.Wait()
	require.NoError(t, unaryErr)
	require.Equal(t, "slow", unaryRes)
	require.NoError(t, streamErr)
	require.Equal(t, 4, streamN)

	// The server no longer answers.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Echo(ctx, &testpb.EchoRequest{Message: "late"}, grpc.WaitForReady(false))
	require.Error(t, err)
}

func TestStopDeadlineCutsOffLongCalls(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	done := make(chan error, 1)
	go func() {
		_, err := c.Echo(context.Background(), &testpb.EchoRequest{Message: "forever", SleepMs: 60_000})
		done <- err
	}()
	<-a.echo.started
	err := a.stop(300 * time.Millisecond)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	// fx returns at the deadline; the hook logs once it has cut the calls off
	// (the call sleeps a minute: only the cut-off ends it before that).
	require.Eventually(t, func() bool { return a.logs.FilterMessage("grpc graceful stop cut off").Len() == 1 },
		10*time.Second, 10*time.Millisecond)
	select {
	case err := <-done:
		require.Error(t, err)
		require.Contains(t, []codes.Code{codes.Unavailable, codes.Canceled}, status.Code(err), "%v", err)
	case <-time.After(3 * time.Second):
		t.Fatal("the call outlived the stop")
	}
}

func TestAuthFuncGuardsAllButHealthAndReflection(t *testing.T) {
	t.Parallel()
	auth := func(ctx context.Context, method string) (context.Context, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if got := md.Get("authorization"); len(got) == 1 && got[0] == "Bearer good" {
			return ctx, nil
		}
		return nil, status.Error(codes.Unauthenticated, "bad token for "+method)
	}
	a := start(t, nil, fx.Provide(func() fxgrpc.AuthFunc { return auth }))
	conn := dial(t, a.srv.Addr())
	c := testpb.NewEchoClient(conn)

	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Contains(t, err.Error(), "/martyfx.fxgrpc.testpb.Echo/Echo")

	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer good")
	_, err = c.Echo(ctx, &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	stream, err := c.EchoStream(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)

	require.Equal(t, "SERVING", healthCheck(t, conn, ""))
}

func TestUserInterceptorsRunAtTheirOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	record := func(name, msg string) {
		mu.Lock()
		order = append(order, name+":"+msg)
		mu.Unlock()
	}
	rec := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			msg := req.(*testpb.EchoRequest).GetMessage()
			record(name, fmt.Sprintf("%s(span=%t)", msg, trace.SpanFromContext(ctx).SpanContext().IsValid()))
			if name == "a" && msg == "panic" {
				panic("interceptor kaboom")
			}
			return h(ctx, req)
		}
	}
	recStream := func(name string) grpc.StreamServerInterceptor {
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(name, info.FullMethod)
			return h(srv, ss)
		}
	}
	auth := func(ctx context.Context, _ string) (context.Context, error) {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("deny")) > 0 {
			return nil, status.Error(codes.Unauthenticated, "denied")
		}
		return ctx, nil
	}
	a := start(t, nil,
		fx.Supply(fx.Annotate(sdktrace.NewTracerProvider(), fx.As(new(trace.TracerProvider)))),
		fx.Provide(func() fxgrpc.AuthFunc { return auth }),
		fxgrpc.AsUnaryInterceptor(rec("b"), 1),
		fxgrpc.AsUnaryInterceptor(func() grpc.UnaryServerInterceptor { return rec("a") }, -1),
		fxgrpc.AsUnaryInterceptor(rec("c"), 10),
		fxgrpc.AsStreamInterceptor(recStream("s1"), 1),
		fxgrpc.AsStreamInterceptor(recStream("s0"), -1),
	)
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "m"})
	require.NoError(t, err)
	require.Equal(t, []string{"a:m(span=true)", "b:m(span=true)", "c:m(span=true)"}, order)

	// Order >= 0 runs after validation and authentication: an invalid or
	// unauthenticated call meets only the negative orders.
	order = nil
	_, err = c.Echo(ctxT(t), &testpb.EchoRequest{})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	_, err = c.Echo(metadata.AppendToOutgoingContext(ctxT(t), "deny", "1"), &testpb.EchoRequest{Message: "d"})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Equal(t, []string{"a:(span=true)", "a:d(span=true)"}, order)

	// A panic in a negative order is recovered like a handler's.
	_, err = c.Echo(ctxT(t), &testpb.EchoRequest{Message: "panic"})
	require.Equal(t, codes.Internal, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "internal error (ref ")
	require.Len(t, a.logs.FilterMessage("grpc handler panicked").All(), 1)
	require.EqualValues(t, 1, a.echo.calls.Load(), "the handler ran for the first call only")

	order = nil
	stream, err := c.EchoStream(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err)
	require.Equal(t, []string{"s0:/martyfx.fxgrpc.testpb.Echo/EchoStream", "s1:/martyfx.fxgrpc.testpb.Echo/EchoStream"}, order)

	app := fx.New(fxcore.Module, fxgrpc.Module, fx.Replace(source(t)), fx.NopLogger,
		fxgrpc.AsUnaryInterceptor(func() string { return "nope" }, 0))
	require.ErrorContains(t, app.Err(), "fxgrpc.AsUnaryInterceptor(order 0)")
	require.ErrorContains(t, app.Err(), "got string, want a grpc.UnaryServerInterceptor")
}

func TestFinishedCallsAreLoggedWithCodeDurationPeer(t *testing.T) {
	t.Parallel()
	a := start(t, []string{"MARTY_GRPC_LOG_CLIENT_ERROR_LEVEL=warn"})
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	_, err = c.Echo(ctxT(t), &testpb.EchoRequest{})
	require.Error(t, err)

	calls := a.logs.FilterMessage("grpc call").All()
	require.Len(t, calls, 2)
	ok, bad := calls[0], calls[1]
	require.Equal(t, zapcore.InfoLevel, ok.Level)
	f := ok.ContextMap()
	require.Equal(t, "/martyfx.fxgrpc.testpb.Echo/Echo", f["grpc.method"])
	require.Equal(t, "OK", f["grpc.code"])
	require.Contains(t, f["peer"], "127.0.0.1:")
	require.Greater(t, f["duration"], time.Duration(0))
	require.Equal(t, zapcore.WarnLevel, bad.Level)
	require.Equal(t, "InvalidArgument", bad.ContextMap()["grpc.code"])

	// "off" silences a class of outcomes.
	b := start(t, []string{"MARTY_GRPC_LOG_OK_LEVEL=off"})
	_, err = testpb.NewEchoClient(dial(t, b.srv.Addr())).Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.NoError(t, err)
	require.Empty(t, b.logs.FilterMessage("grpc call").All())
}

func TestServeErrorShutsTheAppDownWithExitCode1(t *testing.T) {
	t.Parallel()
	a := start(t, nil)
	wait := a.Wait()
	require.NoError(t, fxgrpc.CloseListener(a.srv))
	select {
	case sig := <-wait:
		require.Equal(t, 1, sig.ExitCode)
	case <-time.After(5 * time.Second):
		t.Fatal("the app was not asked to stop")
	}
	require.Len(t, a.logs.FilterMessage("grpc server failed; shutting down").All(), 1)
}

func TestMessageSizeAndConnectionLimits(t *testing.T) {
	t.Parallel()
	a := start(t, []string{"MARTY_GRPC_MAX_RECV_MSG_SIZE=1024", "MARTY_GRPC_MAX_CONNECTIONS=1"})
	first := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err := first.Echo(ctxT(t), &testpb.EchoRequest{Message: strings.Repeat("x", 2048)})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
	_, err = first.Echo(ctxT(t), &testpb.EchoRequest{Message: strings.Repeat("x", 512)})
	require.NoError(t, err)

	// A second connection waits while the first is open.
	secondConn := dial(t, a.srv.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = testpb.NewEchoClient(secondConn).Echo(ctx, &testpb.EchoRequest{Message: "x"})
	require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
}
