package fxgrpc_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo is the test service. Echo answers message repeated; fail selects a
// failure ("panic", "unavailable", "internal"); sleep_ms waits (ending early
// when the call is cancelled). started receives a value once a call is in
// the handler.
type echo struct {
	testpb.UnimplementedEchoServer
	calls   atomic.Int64
	started chan string
	// failFirst fails that many calls with UNAVAILABLE first.
	failFirst atomic.Int64
	// holds: an Echo whose message is a key waits until released (or the
	// call ends).
	holds sync.Map // string -> *held
}

type held struct {
	entered, release chan struct{}
	once             sync.Once
}

// hold makes the first Echo call with message msg wait until release is
// called; entered is closed once it waits.
func (e *echo) hold(msg string) (entered <-chan struct{}, release func()) {
	h := &held{entered: make(chan struct{}), release: make(chan struct{})}
	e.holds.Store(msg, h)
	return h.entered, sync.OnceFunc(func() { close(h.release) })
}

func newEcho() *echo { return &echo{started: make(chan string, 16)} }

func (e *echo) Echo(ctx context.Context, req *testpb.EchoRequest) (*testpb.EchoResponse, error) {
	e.calls.Add(1)
	select {
	case e.started <- "Echo":
	default:
	}
	if v, ok := e.holds.Load(req.GetMessage()); ok {
		h := v.(*held)
		h.once.Do(func() { close(h.entered) })
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if e.failFirst.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "not yet")
	}
	switch req.GetFail() {
	case "panic":
		panic("boom: " + req.GetMessage())
	case "unavailable":
		return nil, status.Error(codes.Unavailable, "dependency down")
	case "internal":
		return nil, errors.New("plain error")
	}
	if err := sleep(ctx, req.GetSleepMs()); err != nil {
		return nil, err
	}
	return &testpb.EchoResponse{
		Message: strings.Repeat(req.GetMessage(), max(1, int(req.GetRepeat()))),
		TraceId: traceID(ctx),
	}, nil
}

func (e *echo) Check(_ context.Context, req *testpb.CheckRequest) (*testpb.EchoResponse, error) {
	e.calls.Add(1)
	return &testpb.EchoResponse{Message: req.GetEmail()}, nil
}

func (e *echo) EchoStream(req *testpb.EchoRequest, stream grpc.ServerStreamingServer[testpb.EchoResponse]) error {
	select {
	case e.started <- "EchoStream":
	default:
	}
	for i := 0; i < max(1, int(req.GetRepeat())); i++ {
		if err := sleep(stream.Context(), req.GetSleepMs()); err != nil {
			return err
		}
		if err := stream.Send(&testpb.EchoResponse{Message: req.GetMessage()}); err != nil {
			return err
		}
	}
	return nil
}

func (e *echo) Collect(stream grpc.ClientStreamingServer[testpb.EchoRequest, testpb.EchoResponse]) error {
	var b strings.Builder
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testpb.EchoResponse{Message: b.String()})
		}
		if err != nil {
			return err
		}
		b.WriteString(req.GetMessage())
	}
}

func sleep(ctx context.Context, ms int32) error {
	if ms <= 0 {
		return nil
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func traceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// app is a started test app with the echo service over real TCP.
type app struct {
	*fxtest.App
	srv     *fxgrpc.Server
	clients *fxgrpc.Clients
	echo    *echo
	logs    *observer.ObservedLogs
	stopped bool
}

// stop stops the app within d (the cleanup then does nothing).
func (a *app) stop(d time.Duration) error {
	a.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return a.Stop(ctx)
}

// source returns a config Source from env, with a free loopback port.
func source(t *testing.T, env ...string) *fxcore.Source {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_GRPC_ADDR=127.0.0.1:0"}, env...))
	require.NoError(t, err)
	return src
}

// options are the options of a test app: fxcore, fxgrpc and the echo
// service, logs observed at debug.
func options(t *testing.T, a *app, env []string, opts ...fx.Option) []fx.Option {
	core, logs := observer.New(zap.DebugLevel)
	a.logs = logs
	a.echo = newEcho()
	return append([]fx.Option{
		fxcore.Module, fxgrpc.Module,
		fx.Replace(source(t, env...)),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fxgrpc.AsService(&testpb.Echo_ServiceDesc, func() testpb.EchoServer { return a.echo }),
		fx.Populate(&a.srv, &a.clients),
		fx.NopLogger,
	}, opts...)
}

// start builds and starts a test app; it stops at cleanup.
func start(t *testing.T, env []string, opts ...fx.Option) *app {
	t.Helper()
	a := &app{}
	a.App = fxtest.New(t, options(t, a, env, opts...)...)
	a.RequireStart()
	t.Cleanup(func() {
		if !a.stopped {
			a.RequireStop()
		}
	})
	return a
}

// dial returns a plain client connection to the app's server.
func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newApp(t *testing.T, a *app, env []string, opts ...fx.Option) *fx.App {
	return fx.New(options(t, a, env, opts...)...)
}
