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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtest"
)

func TestDefaults(t *testing.T) {
	t.Setenv("MARTY_SERVICE_NAME", "from-the-process") // never read
	t.Setenv("MARTY_GRPC_ADDR", "127.0.0.1:1")
	var grpcCfg fxgrpc.Config
	var repoCfg fxrepo.Config
	var evCfg fxevents.Config
	app := fxtest.New(t, fx.Populate(&grpcCfg, &repoCfg, &evCfg), fxgrpc.AsService(&ordersDesc, &orders{}))

	require.Equal(t, "fxtest", app.ServiceInfo().Name)
	require.Equal(t, "test", app.ServiceInfo().Environment)
	require.True(t, strings.HasPrefix(app.GRPCAddr(), "127.0.0.1:"), app.GRPCAddr())
	require.NotEqual(t, "127.0.0.1:0", app.GRPCAddr())
	require.True(t, strings.HasPrefix(app.HTTP().BaseURL, "http://127.0.0.1:"), app.HTTP().BaseURL)
	require.True(t, strings.HasPrefix(app.AdminURL(), "http://127.0.0.1:"), app.AdminURL())
	require.NotEqual(t, app.HTTP().BaseURL, app.AdminURL())
	require.Equal(t, fxrepo.DriverSQLite, repoCfg.Driver)
	require.Equal(t, "sqlite", app.DB().Name())
	require.True(t, evCfg.Sync, "the memory bus runs in sync mode")

	var body string
	require.Equal(t, http.StatusOK, app.Admin().Get("/readyz", &body))
	// The registry is the app's own, fresh one.
	require.GreaterOrEqual(t, app.Metric("go_sql_open_connections"), 0.0)
}

func TestEachAppHasItsOwnDatabase(t *testing.T) {
	t.Parallel()
	a := fxtest.New(t, fxtest.WithModules(fxcore.Module, fxrepo.Module), fxrepo.AsModel(&Order{}))
	b := fxtest.New(t, fxtest.WithModules(fxcore.Module, fxrepo.Module))
	require.NoError(t, a.DB().Create(&Order{Item: "only in a"}).Error)
	require.True(t, a.DB().Migrator().HasTable(&Order{}))
	require.False(t, b.DB().Migrator().HasTable(&Order{}), "b sees a's table")
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	app := fxtest.New(t, fxtest.Postgres(t), OrdersModule)
	require.Equal(t, "postgres", app.DB().Name())
	id := new(wrapperspb.Int64Value)
	require.NoError(t, app.GRPC().Invoke(context.Background(), "/orders.Orders/Create", wrapperspb.String("pg"), id))
	var n int64
	require.NoError(t, app.DB().Model(&Order{}).Where("item = ?", "pg").Count(&n).Error)
	require.Equal(t, int64(1), n)
}

func TestEnvAndConfig(t *testing.T) {
	t.Parallel()
	var cfg fxgrpc.Config
	app := fxtest.New(t, OrdersModule,
		fxtest.Env("MARTY_SERVICE_NAME=orders", "MARTY_GRPC_MAX_SEND_MSG_SIZE=4096"),
		fxtest.Config(func(c *fxgrpc.Config) { c.MaxRecvMsgSize = 1024 }),
		fx.Populate(&cfg))
	require.Equal(t, "orders", app.ServiceInfo().Name)
	require.Equal(t, 1024, cfg.MaxRecvMsgSize, "the field the test changed")
	require.Equal(t, 4096, cfg.MaxSendMsgSize, "a field set by Env is kept")
	require.Equal(t, "127.0.0.1:0", cfg.Addr, "a default is kept")
	require.Equal(t, fxgrpc.DefaultConfig().KeepaliveTime, cfg.KeepaliveTime)

	// And the server really runs with it.
	err := app.GRPC().Invoke(context.Background(), "/orders.Orders/Create", wrapperspb.String(strings.Repeat("x", 2000)), new(wrapperspb.Int64Value))
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "%v", err)
}

type greeter struct{ greeting string }

type pinged struct{ N int }

func (pinged) EventType() string { return "test.pinged" }

type countingUoW struct{ calls atomic.Int64 }

func (u *countingUoW) Do(ctx context.Context, fn func(context.Context) error, _ ...fxrepo.TxOption) error {
	u.calls.Add(1)
	return fn(ctx)
}

type countingBus struct {
	fxevents.Bus
	n *atomic.Int64
}

func (b countingBus) Publish(ctx context.Context, evs ...fxevents.Event) error {
	b.n.Add(int64(len(evs)))
	return b.Bus.Publish(ctx, evs...)
}

func TestReplaceAndDecorate(t *testing.T) {
	t.Parallel()
	fake := &countingUoW{}
	var published atomic.Int64
	var (
		g   *greeter
		uow fxrepo.UnitOfWork
		bus fxevents.Bus
	)
	app := fxtest.New(t, OrdersModule,
		fx.Provide(func() *greeter { return &greeter{"hello"} }),
		fxtest.Replace(&greeter{"hi"}, fxtest.As[fxrepo.UnitOfWork](fake)),
		// Interface types decorate as they are, on top of the harness's own
		// decoration of the bus and the logger.
		fxtest.Decorate(
			func(b fxevents.Bus) fxevents.Bus { return countingBus{b, &published} },
			func(l *zap.Logger) *zap.Logger { return l.With(zap.String("tenant", "acme")) },
		),
		fx.Populate(&g, &uow, &bus))
	require.Equal(t, "hi", g.greeting)
	require.Same(t, fake, uow)
	require.NoError(t, uow.Do(context.Background(), func(context.Context) error { return nil }))
	require.Equal(t, int64(1), fake.calls.Load())

	require.NoError(t, bus.Publish(context.Background(), pinged{N: 1}))
	require.Equal(t, int64(1), published.Load(), "the test's decorator ran")
	require.Len(t, app.Events(), 1, "the harness's recorder still sees the event")
	app.RequireLog("grpc server listening", zap.String("tenant", "acme"))
}

func TestSpansAndLogs(t *testing.T) {
	t.Parallel()
	app := fxtest.New(t, OrdersModule)
	require.Equal(t, http.StatusNotFound, app.HTTP().Get("/orders/404", nil))
	s := app.RequireSpan("GET /orders/{id}", attribute.Int("http.response.status_code", 404))
	require.Equal(t, "GET /orders/{id}", s.Name())
	require.NotEmpty(t, app.Spans())
	e := app.RequireLog("http request", zap.String("route", "/orders/{id}"), zap.Int("status", 404))
	require.Equal(t, "http", e.LoggerName)
	require.NotZero(t, app.Logs().FilterMessage("http request").Len())
}

func TestEventsAndMetrics(t *testing.T) {
	t.Parallel()
	app := fxtest.New(t, OrdersModule)
	ctx := context.Background()
	for _, item := range []string{"a", "b"} {
		require.NoError(t, app.GRPC().Invoke(ctx, "/orders.Orders/Create", wrapperspb.String(item), new(wrapperspb.Int64Value)))
	}
	evs := app.Events()
	require.Len(t, evs, 2)
	require.Equal(t, "orders.created", evs[0].Envelope.Type)
	require.Equal(t, "fxtest", evs[0].Envelope.Source)
	require.Equal(t, OrderCreated{ID: 1, Item: "a"}, evs[0].Event)
	require.NoError(t, evs[1].Err)
	require.Equal(t, []OrderCreated{{1, "a"}, {2, "b"}}, fxtest.RequirePublished[OrderCreated](app))
	// Pointer event types decode too.
	ptrs := fxtest.RequirePublished[*OrderCreated](app)
	require.Equal(t, "b", ptrs[1].Item)

	require.Equal(t, 2.0, app.Metric("marty_events_published_total", "type", "orders.created"))
	require.Equal(t, 2.0, app.Metric("marty_events_handled_total", "handler", "shipper"))
	require.Equal(t, 2.0, app.Metric("marty_events_handler_duration_seconds", "handler", "shipper"), "a histogram's count")
	app.WaitHandled() // trivially true in sync mode
}

// slow is a handler that waits for release and fails the events whose item
// is "bad" (permanently: dead-lettered at once).
func slowHandler(release chan struct{}, done *atomic.Int64) fx.Option {
	return fxevents.AsHandler(fxevents.HandlerFunc("slow", func(ctx context.Context, e OrderCreated) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		if e.Item == "bad" {
			return fxevents.Permanent(errors.New("bad item"))
		}
		done.Add(1)
		return nil
	}))
}

func TestAsyncWaitHandled(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var done atomic.Int64
	var bus fxevents.Bus
	app := fxtest.New(t, fxtest.Async(), slowHandler(release, &done), fx.Populate(&bus))
	require.NoError(t, bus.Publish(context.Background(), OrderCreated{ID: 1, Item: "ok"}, OrderCreated{ID: 2, Item: "bad"}))
	require.Zero(t, done.Load(), "Publish waited for the handler")
	close(release)
	app.WaitHandled()
	require.Equal(t, int64(1), done.Load())
	require.Equal(t, 1.0, app.Metric("marty_events_dead_total", "handler", "slow"), "a dead letter counts as finished")
	require.Len(t, fxtest.RequirePublished[OrderCreated](app), 2)
}

func TestHTTPClient(t *testing.T) {
	t.Parallel()
	type msg struct {
		Text string `json:"text"`
	}
	app := fxtest.New(t,
		fxhttp.AsRoute("POST /echo", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var m msg
			if err := fxhttp.DecodeJSON(w, r, &m); err != nil {
				fxhttp.WriteError(w, r, err)
				return
			}
			fxhttp.WriteJSON(w, http.StatusCreated, m)
		})),
		fxhttp.AsRoute("GET /text", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("plain"))
		})),
	)
	c := app.HTTP()
	var out msg
	require.Equal(t, http.StatusCreated, c.PostJSON("/echo", msg{"hi"}, &out))
	require.Equal(t, "hi", out.Text)
	var raw []byte
	require.Equal(t, http.StatusCreated, c.Do(http.MethodPost, "/echo", map[string]string{"text": "raw"}, &raw))
	require.JSONEq(t, `{"text":"raw"}`, string(raw))
	var s string
	require.Equal(t, http.StatusOK, c.Get("/text", &s))
	require.Equal(t, "plain", s)
	require.Equal(t, http.StatusNotFound, c.Get("/missing", nil))
	req, err := http.NewRequest(http.MethodGet, c.URL("/text"), nil)
	require.NoError(t, err)
	resp, body := c.Send(req) //nolint:bodyclose // Send reads and closes the body
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "plain", string(body))
	// The client is traced: the server span continues the client's trace.
	client := app.RequireSpan("GET", attribute.String("url.full", c.URL("/text")))
	server := app.RequireSpan("GET /text")
	require.Equal(t, client.SpanContext().TraceID(), server.SpanContext().TraceID())
}

func TestStopEarly(t *testing.T) {
	t.Parallel()
	app := fxtest.New(t, fxtest.WithModules(fxcore.Module, fxgrpc.Module), fxgrpc.AsService(&ordersDesc, &orders{}))
	_ = app.GRPC()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, app.Stop(ctx))
	require.NotNil(t, app.FX())
}

// TestStopRunsTheServersStopSequenceFirst: like martyfx.Run, the harness
// stops the servers (the stop sequence) before any other module's stop
// hook, even one Fx runs first.
func TestStopRunsTheServersStopSequenceFirst(t *testing.T) {
	t.Parallel()
	var serversStopped atomic.Bool
	app := fxtest.New(t, fx.Invoke(func(lc fx.Lifecycle, h *fxhttp.Server, g *fxgrpc.Server) {
		// Appended last, so Fx runs it first: a relay or a database would.
		lc.Append(fx.StopHook(func() {
			serversStopped.Store(refused(h.Addr()) && refused(g.Addr()) && refused(h.AdminAddr()))
		}))
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, app.Stop(ctx))
	require.True(t, serversStopped.Load(), "every server had stopped before the other stop hooks ran")
	require.Equal(t, 1, app.Logs().FilterMessage("stop sequence finished").Len())
}

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

var _ = gorm.ErrRecordNotFound
