package fxevents_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/internal/metrictest"

	// SQLite, for the tests on the embedded database.
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// OrderCreated is a value-typed test event with an aggregate.
type OrderCreated struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (OrderCreated) EventType() string     { return "orders.order_created" }
func (e OrderCreated) AggregateID() string { return e.OrderID }

// OrderShipped is a pointer-typed test event without an aggregate.
type OrderShipped struct {
	OrderID string `json:"order_id"`
}

func (*OrderShipped) EventType() string { return "orders.order_shipped" }

// testApp is an app under test and what the tests look at.
type testApp struct {
	app      *fxtest.App
	bus      fxevents.Bus
	disp     *fxevents.Dispatcher
	reg      *prometheus.Registry
	spans    *tracetest.SpanRecorder
	tp       *sdktrace.TracerProvider
	admin    *httptest.Server
	checks   []fxmonitor.Check
	rules    []fxmonitor.AlertRule
	registry *fxevents.Registry
}

func newTestApp(t *testing.T, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	ta := buildTestApp(t, env, opts...)
	require.NoError(t, ta.app.Err())
	ta.app.RequireStart()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ta.app.Stop(ctx)
	})
	return ta
}

func buildTestApp(t *testing.T, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	ta, all := testOptions(t, env, opts...)
	ta.app = fxtest.New(t, all...)
	return ta
}

// testOptions returns the options of a test app (fx.New them to look at
// construction errors).
func testOptions(t *testing.T, env []string, opts ...fx.Option) (*testApp, []fx.Option) {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_SERVICE_NAME=orders"}, env...))
	require.NoError(t, err)
	ta := &testApp{spans: tracetest.NewSpanRecorder()}
	ta.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ta.spans))
	all := []fx.Option{
		fx.NopLogger,
		fxcore.Module,
		fxevents.Module,
		fx.Replace(src),
		fx.Supply(fx.Annotate(ta.tp, fx.As(new(trace.TracerProvider)))),
		fx.Populate(&ta.bus, &ta.disp, &ta.reg, &ta.registry),
		fx.Invoke(fx.Annotate(func(routes []fxhttp.Route, checks []fxmonitor.Check, rules []fxmonitor.AlertRule) {
			ta.rules = rules
			mux := http.NewServeMux()
			for _, r := range routes {
				mux.Handle(r.Pattern, r.Handler)
			}
			ta.admin = httptest.NewServer(mux)
			t.Cleanup(ta.admin.Close)
			ta.checks = checks
		}, fx.ParamTags(`group:"martyfx.http.admin_routes"`, `group:"martyfx.monitor.checks"`, `group:"martyfx.monitor.alert_rules"`))),
	}
	return ta, append(all, opts...)
}

// metric returns the value of a counter or gauge, or a histogram's sample
// count, with exactly these labels (0 when absent).
func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metrictest.Value(t, g, name, labels)
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 5*time.Millisecond, msg)
}

func mustSource(t *testing.T, env []string) *fxcore.Source {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", env)
	require.NoError(t, err)
	return src
}

func coreModule() fx.Option { return fxcore.Module }
