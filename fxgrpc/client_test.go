package fxgrpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

func TestClientRetriesUnavailable(t *testing.T) {
	a := start(t, nil)
	a.echo.failFirst.Store(2)
	conn, err := fxgrpc.NewClient(a.srv.Addr())
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	res, err := testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "third time"})
	require.NoError(t, err)
	require.Equal(t, "third time", res.GetMessage())
	require.Equal(t, int64(3), a.echo.calls.Load(), "two UNAVAILABLE answers, then success")

	// Other codes are not retried, and MaxAttempts 1 retries nothing.
	a.echo.calls.Store(0)
	_, err = testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "x", Fail: "internal"})
	require.Equal(t, codes.Internal, status.Code(err), "an unclassified error is internal")
	require.Equal(t, int64(1), a.echo.calls.Load())

	a.echo.calls.Store(0)
	a.echo.failFirst.Store(1)
	once, err := fxgrpc.NewClient(a.srv.Addr(), fxgrpc.WithMaxAttempts(1))
	require.NoError(t, err)
	defer func() { require.NoError(t, once.Close()) }()
	_, err = testpb.NewEchoClient(once).Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Equal(t, int64(1), a.echo.calls.Load())
}

func TestClientDefaultDeadline(t *testing.T) {
	a := start(t, nil)
	conn, err := fxgrpc.NewClient(a.srv.Addr(), fxgrpc.WithTimeout(100*time.Millisecond))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	// The handler would answer OK after 5 s: DeadlineExceeded is the
	// client's default deadline.
	_, err = testpb.NewEchoClient(conn).Echo(context.Background(), &testpb.EchoRequest{Message: "x", SleepMs: 5000})
	require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)

	// A deadline set by the caller wins.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = testpb.NewEchoClient(conn).Echo(ctx, &testpb.EchoRequest{Message: "x", SleepMs: 300})
	require.NoError(t, err)
}

func TestNamedClientBreakerOpensAfterFailures(t *testing.T) {
	t.Parallel()
	server := start(t, nil)
	env := append([]string{
		"MARTY_GRPC_CLIENTS_FLAKY_TARGET=" + server.srv.Addr(),
		"MARTY_GRPC_CLIENTS_FLAKY_BREAKER=true",
		"MARTY_GRPC_CLIENTS_FLAKY_MAX_ATTEMPTS=1",
		"MARTY_MONITOR_BREAKERS_GRPC_FLAKY_CONSECUTIVE_FAILURES=3",
		"MARTY_MONITOR_BREAKERS_GRPC_FLAKY_TIMEOUT=1m",
	}, monitorEnv...)
	var breakers *breaker.Breakers
	client := start(t, env, fxmonitor.Module, fx.Populate(&breakers))
	require.Equal(t, []string{"flaky"}, client.clients.Names())
	conn, err := client.clients.Get("FLAKY")
	require.NoError(t, err)
	again, err := client.clients.Get("flaky")
	require.NoError(t, err)
	require.Same(t, conn, again)
	c := testpb.NewEchoClient(conn)

	// Caller errors do not trip it.
	for range 4 {
		_, err := c.Echo(ctxT(t), &testpb.EchoRequest{})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	}
	for range 3 {
		_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x", Fail: "unavailable"})
		require.Equal(t, codes.Unavailable, status.Code(err))
		require.Contains(t, err.Error(), "dependency down")
	}
	require.Equal(t, int64(3), server.echo.calls.Load())
	require.Equal(t, "open", breakers.Get("grpc.flaky").State().String())

	// Open: calls fail fast without reaching the server.
	_, err = c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, err.Error(), "circuit breaker")
	require.Equal(t, int64(3), server.echo.calls.Load())

	_, err = client.clients.Get("missing")
	require.ErrorContains(t, err, "set MARTY_GRPC_CLIENTS_MISSING_TARGET")
}

func TestNamedClientBreakerNeedsMonitor(t *testing.T) {
	var clients *fxgrpc.Clients
	app := fx.New(fxcore.Module, fxgrpc.Module, fx.NopLogger, fx.Populate(&clients), fx.Replace(source(t,
		"MARTY_GRPC_CLIENTS_X_TARGET=127.0.0.1:1", "MARTY_GRPC_CLIENTS_X_BREAKER=true")))
	require.NoError(t, app.Err())
	_, err := clients.Get("x")
	require.ErrorContains(t, err, "breaker needs fxmonitor.Module")
}

func TestClientsAreClosedAtStop(t *testing.T) {
	t.Parallel()
	server := start(t, nil)
	a := start(t, []string{"MARTY_GRPC_CLIENTS_PEER_TARGET=dns:///" + server.srv.Addr()})
	conn, err := a.clients.Get("peer")
	require.NoError(t, err)
	_, err = testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "rr"})
	require.NoError(t, err)
	require.NoError(t, a.stop(5*time.Second))
	require.Equal(t, "SHUTDOWN", conn.GetState().String())
	_, err = a.clients.New(server.srv.Addr())
	require.ErrorContains(t, err, "clients are closed")
}

func TestNewClientWithRegistererSharesTheMetrics(t *testing.T) {
	a := start(t, nil)
	reg := prometheus.NewRegistry()
	for range 2 { // the second connection reuses the registered metrics
		conn, err := fxgrpc.NewClient(a.srv.Addr(), fxgrpc.WithRegisterer(reg))
		require.NoError(t, err)
		_, err = testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
		require.NoError(t, err)
		require.NoError(t, conn.Close())
	}
	n, ok := series(t, reg, "grpc_client_handled_total", map[string]string{"grpc_method": "Echo", "grpc_code": "OK"})
	require.True(t, ok)
	require.Equal(t, 2.0, n)

	// A registry holding another collector of the same name is an error.
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "grpc_client_started_total", Help: "x"}))
	_, err := fxgrpc.NewClient(a.srv.Addr(), fxgrpc.WithRegisterer(clash))
	require.ErrorContains(t, err, "fxgrpc: register client metrics")
}
