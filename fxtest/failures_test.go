package fxtest_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxtest"
)

// newFakeApp starts an app on a fake testing.TB and fails the real test if
// that did not work.
func newFakeApp(t *testing.T, opts ...fx.Option) (*fakeTB, *fxtest.App) {
	t.Helper()
	f := newFake(t)
	var app *fxtest.App
	require.True(t, f.run(func() { app = fxtest.New(f, opts...) }), "New failed: %s", f.fatal())
	t.Cleanup(f.cleanup)
	return f, app
}

func TestBuildFailure(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	require.False(t, f.run(func() { fxtest.New(f, fxtest.Env("MARTY_EVENTS_BUS=kafka")) }))
	require.Contains(t, f.fatal(), "fxtest: build the app: ")
	require.Contains(t, f.fatal(), "MARTY_EVENTS_BUS")
	require.Contains(t, f.fatal(), `"kafka"`)
	f.cleanup()
	require.Contains(t, f.logged(), "fxtest: the app's logs")
}

func TestNestedHarnessOption(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	require.False(t, f.run(func() { fxtest.New(f, fx.Options(fxtest.Env("MARTY_SERVICE_NAME=x"))) }))
	require.Equal(t, "fxtest: build the app: fxtest: fxtest.Env is an option of fxtest.New: pass it to fxtest.New directly, not inside fx.Options or fx.Module", f.fatal())
	f.cleanup()

	app := fx.New(fx.NopLogger, fxtest.WaitTimeout(time.Second))
	require.EqualError(t, app.Err(), "fxtest: fxtest.WaitTimeout is an option of fxtest.New: pass it to fxtest.New directly, not inside fx.Options or fx.Module",
		"given to fx.New, a harness option fails instead of doing nothing")
	require.Equal(t, "fxtest.Async", fxtest.Async().String())
}

func hello(http.ResponseWriter, *http.Request) {}

func newNumber() int { return 1 }

func TestBuildFailureNamesTheRootCauseFirstOnce(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	require.False(t, f.run(func() { fxtest.New(f, fxhttp.AsRoute("GET /hello", hello)) }))
	require.Equal(t, `fxtest: build the app: fxhttp.AsRoute("GET /hello"): fxtest_test.hello: got func(http.ResponseWriter, *http.Request), `+
		"want an http.Handler, or a constructor that returns one (and optionally an error)", f.fatal())
	f.cleanup()
	require.NotContains(t, f.logged(), "AsRoute", "the app's logs do not repeat it")

	f = newFake(t)
	require.False(t, f.run(func() { fxtest.New(f, fxhttp.AsRoute("GET /hello", newNumber)) }))
	lines := strings.Split(f.fatal(), "\n")
	require.Len(t, lines, 2)
	require.Equal(t, `fxtest: build the app: fxhttp.AsRoute("GET /hello"): fxtest_test.newNumber: constructor func() int: got int, want an http.Handler`, lines[0])
	require.LessOrEqual(t, len(lines[0]), 200)
	require.True(t, strings.HasPrefix(lines[1], "  the whole error: could not build arguments"), lines[1])
	require.Equal(t, 1, strings.Count(f.fatal(), "could not build value group fxhttp.Route"), "the chain once")
	f.cleanup()
	require.NotContains(t, f.logged(), "could not build value group", "the app's logs do not repeat it")
}

func TestMisspeltEnvWarnsButTheDefaultsDoNot(t *testing.T) {
	t.Parallel()
	_, app := newFakeApp(t, fxtest.WithModules(fxcore.Module), fxtest.Env("MARTY_STOP_TIMOUT=1s"))
	warned := app.Logs().FilterMessage("no module reads this environment variable; is it misspelt?").All()
	require.Len(t, warned, 1, "MARTY_HTTP_ADDR and the other defaults are for modules this app left out")
	require.Equal(t, map[string]any{"variable": "MARTY_STOP_TIMOUT", "did_you_mean": "MARTY_STOP_TIMEOUT"}, warned[0].ContextMap())
}

func TestStartFailure(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	f := newFake(t)
	require.False(t, f.run(func() {
		fxtest.New(f, fxtest.Env("MARTY_GRPC_ADDR="+busy.Addr().String()), fxgrpc.AsService(&ordersDesc, &orders{}))
	}))
	require.Contains(t, f.fatal(), "fxtest: start the app: ")
	require.Contains(t, f.fatal(), busy.Addr().String())
	f.cleanup()
	// The logs of the failed start are printed, the servers that did start
	// were stopped again.
	require.Contains(t, f.logged(), "http server listening")
	require.Empty(t, f.errs)
}

func TestStopFailure(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	require.True(t, f.run(func() {
		fxtest.New(f, fxtest.WithModules(fxcore.Module), fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.StopHook(func() error { return errors.New("disk on fire") }))
		}))
	}))
	require.False(t, f.Failed())
	f.cleanup()
	require.Len(t, f.errs, 1)
	require.Contains(t, f.errs[0], "fxtest: stop the app: ")
	require.Contains(t, f.errs[0], "disk on fire")
	require.Contains(t, f.logged(), "fxtest: the app's logs", "a failed stop prints the logs")
}

func TestLogsArePrintedOnlyOnFailure(t *testing.T) {
	t.Parallel()
	f := newFake(t)
	require.True(t, f.run(func() { fxtest.New(f, fxtest.WithModules(fxcore.Module)) }))
	f.cleanup()
	require.Empty(t, f.logged())
}

func TestRequireSpanFailure(t *testing.T) {
	t.Parallel()
	f, app := newFakeApp(t, OrdersModule, fxtest.WaitTimeout(50*time.Millisecond))
	require.False(t, f.run(func() { app.HTTP().Get("/orders/1", nil); app.RequireSpan("nope", attribute.String("k", "v")) }))
	require.Contains(t, f.fatal(), `fxtest: no span "nope" {k=v} ended; the spans were:`)
	require.Contains(t, f.fatal(), `"GET /orders/{id}" [server]`)
	require.Contains(t, f.fatal(), "http.response.status_code=404")

	// The right name with a wrong attribute is not a match either.
	require.False(t, f.run(func() { app.RequireSpan("GET /orders/{id}", attribute.Int("http.response.status_code", 200)) }))
}

func TestRequireLogFailure(t *testing.T) {
	t.Parallel()
	f, app := newFakeApp(t, OrdersModule, fxtest.WaitTimeout(50*time.Millisecond))
	require.False(t, f.run(func() { app.RequireLog("grpc server listening", zap.Bool("tls", true)) }))
	require.Contains(t, f.fatal(), `fxtest: no log "grpc server listening" {tls=true}; the logs were:`)
	require.Contains(t, f.fatal(), `INFO grpc: "grpc server listening"`)
	require.Contains(t, f.fatal(), "tls=false")
	require.NotContains(t, f.fatal(), `"provided"`, "Fx's debug events are left out")
}

func TestRequirePublishedFailure(t *testing.T) {
	t.Parallel()
	f, app := newFakeApp(t, OrdersModule, fxtest.WaitTimeout(50*time.Millisecond))
	require.False(t, f.run(func() { fxtest.RequirePublished[OrderCreated](app) }))
	require.Contains(t, f.fatal(), "fxtest: no orders.created event (fxtest_test.OrderCreated) was published; the events were:\n  (none)")

	// Events of other types are listed, with their payload.
	var bus fxevents.Bus
	f2, app2 := newFakeApp(t, OrdersModule, fxtest.WaitTimeout(50*time.Millisecond), fx.Populate(&bus))
	require.NoError(t, bus.Publish(context.Background(), pinged{N: 3}))
	require.False(t, f2.run(func() { fxtest.RequirePublished[OrderCreated](app2) }))
	require.Contains(t, f2.fatal(), "the events were:\n  test.pinged (fxtest_test.pinged) {\"N\":3}")
}

func TestWaitHandledFailure(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var done atomic.Int64
	var bus fxevents.Bus
	f, app := newFakeApp(t, fxtest.Async(), fxtest.WaitTimeout(50*time.Millisecond), slowHandler(release, &done), fx.Populate(&bus))
	defer close(release) // before the stop drains the queue
	require.NoError(t, bus.Publish(context.Background(), OrderCreated{ID: 1, Item: "ok"}))
	require.False(t, f.run(app.WaitHandled))
	require.Contains(t, f.fatal(), "fxtest: handlers still behind after 50ms:\n  slow: 0 of 1 orders.created events finished")
}

func TestMetricFailure(t *testing.T) {
	t.Parallel()
	f, app := newFakeApp(t, OrdersModule)
	require.NoError(t, app.GRPC().Invoke(context.Background(), "/orders.Orders/Create", wrapperspb.String("a"), new(wrapperspb.Int64Value)))

	require.False(t, f.run(func() { app.Metric("marty_nope_total") }))
	require.Contains(t, f.fatal(), "fxtest: no series marty_nope_total in the registry; there is no metric of that name; the metrics were: ")
	require.Contains(t, f.fatal(), "marty_events_published_total")

	f.fatals = nil
	require.False(t, f.run(func() { app.Metric("marty_events_published_total", "type", "orders.deleted") }))
	require.Contains(t, f.fatal(), `fxtest: no series marty_events_published_total{type="orders.deleted"} in the registry; the series were:`)
	require.Contains(t, f.fatal(), `marty_events_published_total{type="orders.created"} 1`)

	f.fatals = nil
	require.False(t, f.run(func() { app.Metric("marty_events_published_total", "type") }))
	require.Contains(t, f.fatal(), "labels must be key, value pairs")
}

func TestAccessorsNameTheMissingModule(t *testing.T) {
	t.Parallel()
	f, app := newFakeApp(t, fxtest.WithModules(fxcore.Module))
	cases := map[string]func(){
		"add fxgrpc.Module":   func() { app.GRPC() },
		"add fxgrpc.Module ":  func() { app.GRPCAddr() },
		"add fxhttp.Module":   func() { app.HTTP() },
		"add fxhttp.Module ":  func() { app.AdminURL() },
		"add fxhttp.Module  ": func() { app.Admin() },
		"add fxrepo.Module":   func() { app.DB() },
		"add fxevents.Module": app.WaitHandled,
	}
	for want, call := range cases {
		f.fatals = nil
		require.False(t, f.run(call), want)
		require.Contains(t, f.fatal(), want[:len(want)-countSpaces(want)])
	}
	require.Empty(t, app.Spans(), "no fxtracing.Module, no spans")
	require.Empty(t, app.Events())
}

func countSpaces(s string) int {
	n := 0
	for i := len(s) - 1; i >= 0 && s[i] == ' '; i-- {
		n++
	}
	return n
}

func TestHTTPDecodeFailures(t *testing.T) {
	t.Parallel()
	f, app := newFakeApp(t,
		fxhttp.AsRoute("GET /text", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("plain"))
		})),
		fxhttp.AsRoute("GET /broken", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"text":`))
		})),
	)
	var out struct{ Text string }
	require.False(t, f.run(func() { app.HTTP().Get("/text", &out) }))
	require.Contains(t, f.fatal(), `fxtest: GET /text: status 200, Content-Type "text/plain; charset=utf-8" is not JSON, cannot decode into *struct { Text string }; body:`+"\nplain")
	f.fatals = nil
	require.False(t, f.run(func() { app.HTTP().Get("/broken", &out) }))
	require.Contains(t, f.fatal(), "fxtest: GET /broken: status 200: decode the body into *struct { Text string }: unexpected end of JSON input; body:\n{\"text\":")
	f.fatals = nil
	require.False(t, f.run(func() { app.HTTP().PostJSON("/text", func() {}, nil) }))
	require.Contains(t, f.fatal(), "fxtest: POST /text: encode the request body func()")
}

func TestPostgresSkipsWithoutDSN(t *testing.T) {
	t.Setenv("MARTY_TEST_POSTGRES_DSN", "")
	f := newFake(t)
	require.False(t, f.run(func() { fxtest.Postgres(f) }))
	require.Len(t, f.skips, 1)
	require.Contains(t, f.skips[0], "MARTY_TEST_POSTGRES_DSN is not set")
}
