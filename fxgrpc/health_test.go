package fxgrpc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/fxmonitor"
)

const echoService = "martyfx.fxgrpc.testpb.Echo"

func healthCheck(t *testing.T, conn *grpc.ClientConn, service string) string {
	t.Helper()
	res, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	return res.GetStatus().String()
}

// watch opens a Watch stream and returns the statuses it receives; the
// channel closes when the stream ends.
func watch(t *testing.T, conn *grpc.ClientConn, service string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: service})
	require.NoError(t, err)
	out := make(chan string, 16)
	go func() {
		defer close(out)
		for {
			res, err := stream.Recv()
			if err != nil {
				return
			}
			out <- res.GetStatus().String()
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			return "<end>"
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no health update")
		return ""
	}
}

// monitorEnv turns off fxmonitor's built-in host checks, so that only the
// test's check drives readiness.
var monitorEnv = []string{
	"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false",
	"MARTY_MONITOR_SYSTEM_ENABLED=false", "MARTY_MONITOR_BREAKER_CHECK=false",
}

func TestHealthFollowsReadinessAndShutdown(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	a := start(t, monitorEnv, fxmonitor.Module, fxmonitor.AsCheck(fxmonitor.Check{
		Name: "dependency", Kinds: fxmonitor.Readiness, Critical: true, Interval: 20 * time.Millisecond,
		Func: func(context.Context) error {
			if down.Load() {
				return errors.New("dependency down")
			}
			return nil
		},
	}))
	conn := dial(t, a.srv.Addr())
	// fxmonitor's first readiness round may still be running under load.
	require.Eventually(t, func() bool { return healthCheck(t, conn, "") == "SERVING" }, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, "SERVING", healthCheck(t, conn, echoService))
	_, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "nope"})
	require.Equal(t, codes.NotFound, status.Code(err))

	overall, svc := watch(t, conn, ""), watch(t, conn, echoService)
	require.Equal(t, "SERVING", next(t, overall))
	require.Equal(t, "SERVING", next(t, svc))

	down.Store(true)
	require.Equal(t, "NOT_SERVING", next(t, overall))
	require.Equal(t, "NOT_SERVING", next(t, svc))
	require.Equal(t, "NOT_SERVING", fxgrpc.Hosted(a.srv)[0].Health)

	down.Store(false)
	require.Equal(t, "SERVING", next(t, overall))
	require.Equal(t, "SERVING", next(t, svc))

	// At shutdown the watchers hear NOT_SERVING, then their streams end
	// (so they do not hold the graceful stop), and the calls in flight
	// still complete.
	c := testpb.NewEchoClient(conn)
	done := make(chan error, 1)
	go func() {
		_, err := c.Echo(context.Background(), &testpb.EchoRequest{Message: "x", SleepMs: 300})
		done <- err
	}()
	<-a.echo.started
	// A watcher that held the graceful stop would make it end at its
	// deadline, with an error.
	require.NoError(t, a.stop(5*time.Second))
	require.NoError(t, <-done)
	require.Equal(t, "NOT_SERVING", next(t, overall))
	require.Equal(t, "<end>", next(t, overall))
	require.Equal(t, "NOT_SERVING", next(t, svc))
	require.Equal(t, "<end>", next(t, svc))
}

func TestHealthWithoutMonitorAndDrainDelay(t *testing.T) {
	t.Parallel()
	a := start(t, []string{"MARTY_GRPC_DRAIN_DELAY=300ms"})
	conn := dial(t, a.srv.Addr())
	require.Equal(t, "SERVING", healthCheck(t, conn, ""))
	overall := watch(t, conn, "")
	require.Equal(t, "SERVING", next(t, overall))

	stopped := make(chan error, 1)
	go func() { stopped <- a.stop(5 * time.Second) }()
	require.Equal(t, "NOT_SERVING", next(t, overall))
	// During the drain delay the server still answers, NOT_SERVING.
	require.Equal(t, "NOT_SERVING", healthCheck(t, conn, ""))
	res, err := testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "draining"})
	require.NoError(t, err)
	require.Equal(t, "draining", res.GetMessage())
	require.NoError(t, <-stopped)
}
