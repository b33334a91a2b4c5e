package fxgrpc_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
)

func closed(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

type reply struct {
	code int
	body string
	err  error
}

func do(c *http.Client, method, url, body string) reply {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, body: string(b), err: err}
}

// stopApp is an app with every server: public HTTP with the REST gateway,
// gRPC, and the admin server with fxmonitor's probes and /metrics; the
// modules in martyfx.Modules' order, so that Fx runs the gRPC server's stop
// hook before the HTTP server's.
type stopApp struct {
	app      *fx.App
	http     *fxhttp.Server
	grpc     *fxgrpc.Server
	stopping *fxcore.Stopping
	echo     *echo
	logs     *observer.ObservedLogs
	client   *http.Client
}

func startStopApp(t *testing.T, env ...string) *stopApp {
	t.Helper()
	a := &stopApp{echo: newEcho()}
	core, logs := observer.New(zap.DebugLevel)
	a.logs = logs
	env = append(append([]string{
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_HTTP_ACCESS_LOG=off",
	}, monitorEnv...), env...)
	a.app = fx.New(
		fxcore.Module, fxhttp.Module, fxmonitor.Module, fxgrpc.Module,
		fx.Replace(source(t, env...)),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fxgrpc.AsService(&testpb.Echo_ServiceDesc, func() testpb.EchoServer { return a.echo }),
		fxgrpc.AsGateway(registerEcho),
		fx.Populate(&a.http, &a.grpc, &a.stopping),
		fx.NopLogger,
	)
	require.NoError(t, a.app.Err())
	require.NoError(t, a.app.Start(ctxT(t)))
	tr := &http.Transport{}
	a.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.app.Stop(ctx)
	})
	return a
}

func (a *stopApp) admin(path string) reply {
	return do(a.client, http.MethodGet, "http://"+a.http.AdminAddr()+path, "")
}

// TestStopSequenceAcrossServers: readiness fails everywhere before any
// listener closes, one drain delay (the largest), the public HTTP server and
// its gateway drain while gRPC serves, then gRPC stops gracefully while the
// admin server answers probes and /metrics, then the admin server; every
// request in flight completes.
func TestStopSequenceAcrossServers(t *testing.T) {
	t.Parallel()
	a := startStopApp(t, "MARTY_HTTP_DRAIN_DELAY=100ms", "MARTY_GRPC_DRAIN_DELAY=150ms")
	api, grpcAddr, admin := a.http.Addr(), a.grpc.Addr(), a.http.AdminAddr()
	conn := dial(t, grpcAddr)
	echoc := testpb.NewEchoClient(conn)
	require.Eventually(t, func() bool { return a.admin("/readyz").code == http.StatusOK }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "SERVING", healthCheck(t, conn, ""))

	// At the moment shutdown begins: readiness already fails on every
	// server, and every listener is still open.
	type atBegin struct {
		readyz, grpcHealth string
		open               bool
	}
	begun := make(chan atBegin, 1)
	a.stopping.OnBegin(func() {
		b := atBegin{readyz: a.admin("/readyz").body}
		if res, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err == nil {
			b.grpcHealth = res.GetStatus().String()
		}
		b.open = !closed(api) && !closed(grpcAddr) && !closed(admin)
		begun <- b
	})

	// A REST call (through the gateway) and a gRPC call in flight.
	restIn, releaseREST := a.echo.hold("rest in flight")
	grpcIn, releaseGRPC := a.echo.hold("grpc in flight")
	defer releaseREST()
	defer releaseGRPC()
	rest := make(chan reply, 1)
	go func() {
		rest <- do(a.client, http.MethodPost, "http://"+api+"/v1/echo", `{"message":"rest in flight"}`)
	}()
	grpcDone := make(chan error, 1)
	go func() {
		res, err := echoc.Echo(context.Background(), &testpb.EchoRequest{Message: "grpc in flight"})
		if err == nil && res.GetMessage() != "grpc in flight" {
			err = io.ErrUnexpectedEOF
		}
		grpcDone <- err
	}()
	<-restIn
	<-grpcIn

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- a.app.Stop(ctx) // plain Fx: the gRPC server's hook runs first
	}()
	b := <-begun
	require.Equal(t, "shutting down\n", b.readyz, "/readyz fails at once")
	require.Equal(t, "NOT_SERVING", b.grpcHealth, "gRPC health fails at once")
	require.True(t, b.open, "no listener closed yet")

	// 1. The public HTTP server drains: its listener is closed, the REST
	// call is in flight, gRPC still serves (new calls too), the admin
	// server answers.
	require.Eventually(t, func() bool { return closed(api) }, 5*time.Second, 5*time.Millisecond)
	require.False(t, closed(grpcAddr), "gRPC listens while the public HTTP server drains")
	res, err := echoc.Echo(ctxT(t), &testpb.EchoRequest{Message: "during the HTTP drain"})
	require.NoError(t, err, "gRPC serves while the public HTTP server drains")
	require.Equal(t, "during the HTTP drain", res.GetMessage())
	require.Equal(t, http.StatusServiceUnavailable, a.admin("/readyz").code)
	require.Equal(t, http.StatusOK, a.admin("/metrics").code)

	releaseREST()
	r := <-rest
	require.NoError(t, r.err, "the REST call in flight completes")
	require.Equal(t, http.StatusOK, r.code, r.body)
	require.Contains(t, r.body, "rest in flight")

	// 2. gRPC stops gracefully: its listener closes, the call in flight
	// runs, probes and /metrics still answer.
	require.Eventually(t, func() bool { return closed(grpcAddr) }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, http.StatusServiceUnavailable, a.admin("/readyz").code, "probes answer while gRPC drains")
	require.Equal(t, http.StatusOK, a.admin("/metrics").code, "/metrics answers while gRPC drains")
	releaseGRPC()
	require.NoError(t, <-grpcDone, "the gRPC call in flight completes")

	// 3. The admin server stops last.
	require.NoError(t, <-stopped)
	require.True(t, closed(admin))

	// The drain was waited once, the largest of the two.
	drains := a.logs.FilterMessageSnippet("waiting the drain delay").All()
	require.Len(t, drains, 1)
	require.Equal(t, 150*time.Millisecond, drains[0].ContextMap()["drain_delay"])
	done := a.logs.FilterMessage("stop sequence finished").All()
	require.Len(t, done, 1)
	require.Equal(t, []any{"http api", "grpc", "http admin"}, done[0].ContextMap()["stages"])
}

// TestStopDeadlineDuringTheDrainStopsEveryServer: a stop deadline shorter
// than the drain delay still stops every server (hard), and the stop
// returns an error.
func TestStopDeadlineDuringTheDrainStopsEveryServer(t *testing.T) {
	t.Parallel()
	a := startStopApp(t, "MARTY_HTTP_DRAIN_DELAY=1h", "MARTY_GRPC_DRAIN_DELAY=1h")
	api, grpcAddr, admin := a.http.Addr(), a.grpc.Addr(), a.http.AdminAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = a.grpc.Stop(ctx) // the gRPC server's stop hook, which Fx runs first
	require.True(t, closed(api), "public HTTP server stopped")
	require.True(t, closed(grpcAddr), "gRPC server stopped")
	require.True(t, closed(admin), "admin server stopped")
	err := a.http.Stop(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "the stop deadline cut the drain delay (1h0m0s) short")
	require.Equal(t, 1, a.logs.FilterMessage("stop sequence finished with errors").Len())
}
