package fxgrpc_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/fxhttp"
)

// noServiceApp starts fxgrpc.Module without AsService, configured to
// listen on an address that another listener holds already.
func noServiceApp(t *testing.T, opts ...fx.Option) (*fx.App, *fxgrpc.Server, *observer.ObservedLogs, string, error) {
	t.Helper()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = held.Close() })
	addr := held.Addr().String()
	core, logs := observer.New(zap.DebugLevel)
	var srv *fxgrpc.Server
	app := fx.New(append([]fx.Option{
		fxcore.Module, fxgrpc.Module, fx.NopLogger,
		fx.Replace(source(t, "MARTY_GRPC_ADDR="+addr)),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fx.Populate(&srv),
	}, opts...)...)
	require.NoError(t, app.Err())
	err = app.Start(ctxT(t))
	if err == nil {
		t.Cleanup(func() { require.NoError(t, app.Stop(context.Background())) })
	}
	return app, srv, logs, addr, err
}

func TestNoServiceNoListener(t *testing.T) {
	t.Parallel()
	// The configured port is taken: a server that tried to bind it would
	// fail the start. Without a service it binds nothing.
	_, srv, logs, addr, err := noServiceApp(t)
	require.NoError(t, err, "no listener was opened on %s", addr)
	require.Empty(t, srv.Addr())
	require.Len(t, logs.FilterMessageSnippet("no gRPC service registered (fxgrpc.AsService)").FilterField(zap.String("addr", addr)).All(), 1)
	require.Equal(t, zap.DebugLevel, logs.FilterMessageSnippet("no gRPC service registered").All()[0].Level)
	require.Empty(t, logs.FilterMessage("grpc server listening").All())
}

func TestServiceRegisteredOnGRPCListens(t *testing.T) {
	t.Parallel()
	// A service registered on GRPC() before Start counts as one.
	var srv *fxgrpc.Server
	app := fx.New(fxcore.Module, fxgrpc.Module, fx.NopLogger, fx.Replace(source(t)), fx.Populate(&srv),
		fx.Invoke(func(s *fxgrpc.Server) { s.GRPC().RegisterService(&testpb.Echo_ServiceDesc, newEcho()) }))
	require.NoError(t, app.Start(ctxT(t)))
	defer func() { require.NoError(t, app.Stop(context.Background())) }()
	require.NotEmpty(t, srv.Addr())
	res, err := testpb.NewEchoClient(dial(t, srv.Addr())).Echo(ctxT(t), &testpb.EchoRequest{Message: "direct"})
	require.NoError(t, err)
	require.Equal(t, "direct", res.GetMessage())
}

func TestGatewayWithoutServiceFailsStart(t *testing.T) {
	t.Parallel()
	_, _, _, _, err := noServiceApp(t, fxhttp.Module, fx.Decorate(func(c fxhttp.Config) fxhttp.Config {
		c.Addr, c.AdminAddr = "127.0.0.1:0", ""
		return c
	}), fxgrpc.AsGateway(registerEcho), fx.Invoke(func(*fxhttp.Server) {}))
	require.ErrorContains(t, err, "fxgrpc: the REST gateway (AsGateway) calls the gRPC server, which hosts no service: register one with fxgrpc.AsService")
}
