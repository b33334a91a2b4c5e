package load_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/fxtest/load"
)

// testService answers UnaryCall with the status the request asks for.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	if s := req.GetResponseStatus(); s.GetCode() != 0 {
		return nil, status.Error(codes.Code(s.GetCode()), s.GetMessage())
	}
	return &testgrpc.SimpleResponse{}, nil
}

// The HTTP and gRPC targets drive a real app through its own clients; the
// failures are counted by HTTP status and gRPC code.
func TestAppHTTPAndGRPCTargets(t *testing.T) {
	var posts atomic.Int64
	app := fxtest.New(t,
		fxhttp.AsRoute("POST /v1/things", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var body struct{ Name string }
				if err := fxhttp.DecodeJSON(w, r, &body); err != nil || body.Name != "mug" {
					fxhttp.WriteProblem(w, r, http.StatusBadRequest, "want a mug")
					return
				}
				if posts.Add(1)%4 == 0 {
					fxhttp.WriteProblem(w, r, http.StatusConflict, "taken")
					return
				}
				fxhttp.WriteJSON(w, http.StatusCreated, body)
			})
		}),
		fxgrpc.AsService(&testgrpc.TestService_ServiceDesc, func() testgrpc.TestServiceServer { return testService{} }),
	)

	res, err := load.Run(t.Context(), load.HTTP(app.HTTP(), http.MethodPost, "/v1/things", map[string]string{"name": "mug"}),
		load.Workers(4), load.Count(200), load.WarmupOps(20))
	require.NoError(t, err)
	require.Equal(t, "POST /v1/things", res.Name)
	require.Equal(t, int64(200), res.Count)
	require.Equal(t, map[string]int64{"HTTP 409": 50}, res.Errors, "%s", res)
	require.Equal(t, int64(220), posts.Load())

	res, err = load.Run(t.Context(), load.HTTP(app.HTTP(), http.MethodGet, "/nowhere", nil), load.Count(10))
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"HTTP 404": 10}, res.Errors, "%s", res)

	ok := load.GRPC(app.GRPC(), "/grpc.testing.TestService/UnaryCall", &testgrpc.SimpleRequest{}, &testgrpc.SimpleResponse{})
	res, err = load.Run(t.Context(), ok, load.Rate(500), load.Count(100))
	require.NoError(t, err)
	require.Equal(t, int64(100), res.Count)
	require.Zero(t, res.Failed, "%s", res)
	require.Equal(t, float64(100), app.Metric("grpc_server_handled_total", "grpc_method", "UnaryCall", "grpc_code", "OK"))

	broken := load.GRPC(app.GRPC(), "/grpc.testing.TestService/UnaryCall",
		&testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Internal), Message: "broken"}}, &testgrpc.SimpleResponse{})
	missing := load.GRPC(app.GRPC(), "/grpc.health.v1.Health/Check",
		&grpc_health_v1.HealthCheckRequest{Service: "nope"}, &grpc_health_v1.HealthCheckResponse{})
	for _, tc := range []struct {
		target load.Target
		class  string
	}{{broken, "gRPC Internal"}, {missing, "gRPC NotFound"}} {
		res, err = load.Run(t.Context(), tc.target, load.Workers(2), load.Count(30))
		require.NoError(t, err)
		require.Equal(t, map[string]int64{tc.class: 30}, res.Errors, "%s", res)
	}
}

// The probe measures Publish to handled through the app's bus and
// dispatcher: the memory bus (sync and queued), the outbox and its relay,
// and a JetStream transport. Every probe event is handled once, by the
// dispatcher (its metric counts them), and none is left waiting.
func TestProbeThroughTheBus(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) []fx.Option
	}{
		{"memory sync", func(*testing.T) []fx.Option { return nil }},
		{"memory queued", func(*testing.T) []fx.Option { return []fx.Option{fxtest.Async()} }},
		{"outbox", func(*testing.T) []fx.Option {
			return []fx.Option{fxtest.Env("MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_REQUIRE_TX=true")}
		}},
		{"nats", func(t *testing.T) []fx.Option {
			return []fx.Option{natsjs.Module, fxtest.Env("MARTY_NATS_URL=" + natsdev.RunForTest(t))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := load.NewProbe()
			app := fxtest.New(t, append(tc.opts(t), probe.Option())...)
			res, err := load.Run(t.Context(), probe.Target(), load.Workers(4), load.Count(100), load.WarmupOps(10), load.Timeout(20*time.Second))
			require.NoError(t, err)
			require.Equal(t, int64(100), res.Count)
			require.Zero(t, res.Failed, "%s", res)
			require.Zero(t, probe.Pending())
			require.Equal(t, float64(110), app.Metric("marty_events_handled_total", "handler", load.ProbeHandlerName))
			require.Positive(t, res.P50)
		})
	}
}

// A probe that is in no app says so.
func TestProbeWithoutApp(t *testing.T) {
	t.Parallel()
	res, err := load.Run(t.Context(), load.NewProbe().Target(), load.Count(1))
	require.NoError(t, err)
	require.Equal(t, "load: the probe is in no app: pass probe.Option() to fxtest.New", res.ErrorSamples["error"])
}
