package fxevents_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/glebarez/sqlite"
	"github.com/pressly/goose/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// NewDispatcher validates its Config itself: a program without Fx gets the
// errors the module gives.
func TestNewDispatcherValidatesTheConfig(t *testing.T) {
	t.Parallel()
	cfg := fxevents.DefaultConfig()
	cfg.Workers = 0
	_, err := fxevents.NewDispatcher(cfg, fxevents.DispatcherOptions{})
	require.ErrorContains(t, err, "fxevents: invalid workers=0: want a positive integer")

	cfg = fxevents.DefaultConfig()
	cfg.Bus = fxevents.BusOutbox
	_, err = fxevents.NewDispatcher(cfg, fxevents.DispatcherOptions{})
	require.ErrorContains(t, err, "fxevents: MARTY_EVENTS_BUS=outbox needs a database (DispatcherOptions.DB)")
}

func TestBusConstructorsNeedTheirDispatcher(t *testing.T) {
	t.Parallel()
	_, err := fxevents.NewMemoryBus(fxevents.MemoryBusOptions{})
	require.ErrorContains(t, err, "fxevents: NewMemoryBus needs a Dispatcher")
	d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{})
	require.NoError(t, err)
	_, err = fxevents.NewOutboxBus(fxevents.OutboxBusOptions{Dispatcher: d})
	require.ErrorContains(t, err, `fxevents: NewOutboxBus needs a Dispatcher built with Config.Bus "outbox"`)
}

// The memory bus without Fx: the dispatcher's options carry the handler,
// the service name (Envelope.Source) and the metrics.
func TestMemoryBusWithoutFx(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	got := make(chan fxevents.Envelope, 1)
	d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{
		Info:       fxcore.ServiceInfo{Name: "orders"},
		Registerer: reg,
		Handlers: []fxevents.Handler{fxevents.WrapHandler(
			fxevents.HandlerFunc("audit", func(context.Context, OrderCreated) error { return nil }),
			func(_ context.Context, env fxevents.Envelope) error { got <- env; return nil })},
	})
	require.NoError(t, err)
	bus, err := fxevents.NewMemoryBus(fxevents.MemoryBusOptions{Dispatcher: d, Registerer: reg})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, bus.Start(ctx))
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o1"}))
	env := <-got
	require.Equal(t, "orders", env.Source)
	require.Equal(t, "o1", env.AggregateID)
	require.NoError(t, bus.Stop(ctx))
	require.ErrorIs(t, bus.Publish(ctx, OrderCreated{}), fxevents.ErrClosed)
	eventually(t, func() bool {
		return metric(t, reg, "marty_events_handled_total", map[string]string{"type": "orders.order_created", "handler": "audit"}) == 1
	}, "counted on the given registry")
	families, err := reg.Gather()
	require.NoError(t, err)
	names := make([]string, len(families))
	for i, f := range families {
		names[i] = f.GetName()
	}
	require.Contains(t, names, "marty_events_queue_depth")
}

// The outbox without Fx, on SQLite: Publish stores the event in the
// unit of work's transaction, Start runs the relay, which delivers it to
// the handler in process and deletes the row; Stop ends the relay.
func TestOutboxBusWithoutFx(t *testing.T) {
	t.Parallel()
	db, err := gorm.Open(sqlite.Open("file:"+filepath.Join(t.TempDir(), "events.db")+"?_pragma=busy_timeout(5000)"),
		&gorm.Config{Logger: logger.Discard})
	require.NoError(t, err)
	sqlDB, err := db.DB()
	require.NoError(t, err)
	t.Cleanup(func() { _ = sqlDB.Close() })
	sqlDB.SetMaxOpenConns(1)
	migrations, err := fs.Sub(fxevents.Migrations(), "sqlite")
	require.NoError(t, err)
	p, err := goose.NewProvider(goose.DialectSQLite3, sqlDB, migrations)
	require.NoError(t, err)
	_, err = p.Up(context.Background())
	require.NoError(t, err)

	cfg := fxevents.DefaultConfig()
	cfg.Bus = fxevents.BusOutbox
	var handled atomic.Int32
	d, err := fxevents.NewDispatcher(cfg, fxevents.DispatcherOptions{
		DB: db,
		Handlers: []fxevents.Handler{fxevents.HandlerFunc("audit", func(context.Context, OrderCreated) error {
			handled.Add(1)
			return nil
		})},
	})
	require.NoError(t, err)
	bus, err := fxevents.NewOutboxBus(fxevents.OutboxBusOptions{Dispatcher: d})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o1"}))
	var rows int64
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&rows).Error)
	require.Equal(t, int64(1), rows, "stored; nothing relays before Start")

	require.NoError(t, bus.Start(ctx))
	eventually(t, func() bool { return handled.Load() == 1 }, "relayed to the handler")
	eventually(t, func() bool {
		return db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&rows).Error == nil && rows == 0
	}, "the row is deleted once delivered")
	require.NoError(t, bus.Stop(ctx))
	require.NoError(t, bus.Stop(ctx), "Stop twice is fine")
}

// Every sentinel error names its package, and those a client can meet are
// classified: the servers answer with the class's code and a message that
// is not the error's text.
func TestSentinelErrorsSayTheirPackageAndClass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err   error
		class fxcore.ErrorClass
	}{
		{fxevents.ErrBufferFull, fxcore.ClassUnavailable},
		{fxevents.ErrClosed, fxcore.ClassUnavailable},
		{fxevents.ErrTransportUnavailable, fxcore.ClassUnavailable},
		{fxevents.ErrNoTransaction, fxcore.ClassInternal},
		{fxevents.ErrDeadLetterNotFound, fxcore.ClassNotFound},
		{fxevents.ErrUnknownHandler, fxcore.ClassInternal},
	} {
		require.True(t, strings.HasPrefix(tc.err.Error(), "fxevents: "), tc.err.Error())
		wrapped := fmt.Errorf("create order 42: %w", tc.err)
		require.ErrorIs(t, wrapped, tc.err)
		cl := fxcore.Classify(wrapped)
		require.Equal(t, tc.class, cl.Class, tc.err.Error())
		require.NotContains(t, cl.Message, "fxevents", "clients never read the error's text")
	}
	require.Equal(t, "the service is busy; retry later", fxcore.Classify(fxevents.ErrBufferFull).Message)
}

// Middleware runs inside the dispatcher's span and panic recovery, in
// ascending Order, whatever the sign: a panicking middleware is a failed
// attempt whose span records the error.
func TestMiddlewareRunsInsideTheSpanAndRecovery(t *testing.T) {
	t.Parallel()
	var trail []string
	mw := func(name string, panics bool) fxevents.HandlerMiddleware {
		return fxevents.HandlerMiddleware{Name: name, Wrap: func(h fxevents.Handler) fxevents.Handler {
			return fxevents.WrapHandler(h, func(ctx context.Context, env fxevents.Envelope) error {
				trail = append(trail, name)
				if panics {
					panic("boom in " + name)
				}
				return h.Handle(ctx, env)
			})
		}}
	}
	ta := newTestApp(t, []string{"MARTY_EVENTS_SYNC=true", "MARTY_EVENTS_MAX_ATTEMPTS=1"},
		fxevents.AsHandlerMiddleware(mw("zero", true), 0),
		fxevents.AsHandlerMiddleware(mw("negative", false), -1),
		fxevents.AsHandler(fxevents.HandlerFunc("h", func(context.Context, OrderCreated) error { return nil })),
	)
	err := ta.bus.Publish(context.Background(), OrderCreated{OrderID: "x"})
	require.ErrorContains(t, err, "handler panicked: boom in zero")
	require.Equal(t, []string{"negative", "zero"}, trail)
	var process sdktrace.ReadOnlySpan
	for _, s := range ta.spans.Ended() {
		if s.Name() == "process orders.order_created" {
			process = s
		}
	}
	require.NotNil(t, process, "the attempt is traced")
	require.Equal(t, codes.Error, process.Status().Code)
	require.Contains(t, process.Status().Description, "boom in zero")
}

// Tracing is decided from the provider the dispatcher is given, through
// public API: a noop provider starts no span at all (two allocations fewer
// per handled event than OpenTelemetry's global provider without an SDK,
// which makes non-recording spans), and a real provider records.
func TestTracingFollowsTheGivenProvider(t *testing.T) {
	// Not parallel: it counts allocations and reads the global provider.
	allocs := func(tp trace.TracerProvider) float64 {
		d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{TracerProvider: tp,
			Handlers: []fxevents.Handler{noopHandler{}}})
		require.NoError(t, err)
		env, err := fxevents.NewEnvelope("test", OrderCreated{OrderID: "o1"}, fxevents.DefaultCodec())
		require.NoError(t, err)
		ctx := context.Background()
		return testing.AllocsPerRun(200, func() { _ = d.HandleOne(ctx, "noop", env, 1) })
	}
	withNoop, withGlobal := allocs(noop.NewTracerProvider()), allocs(otel.GetTracerProvider())
	require.LessOrEqual(t, withNoop+2, withGlobal, "noop: %v allocations, global without an SDK: %v", withNoop, withGlobal)

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{TracerProvider: tp,
		Handlers: []fxevents.Handler{noopHandler{}}})
	require.NoError(t, err)
	env, err := fxevents.NewEnvelope("test", OrderCreated{OrderID: "o1"}, fxevents.DefaultCodec())
	require.NoError(t, err)
	require.NoError(t, d.HandleOne(context.Background(), "noop", env, 1).Err)
	require.Len(t, rec.Ended(), 1)
}

// Without a tracer provider in the graph (no fxtracing) the module makes no
// spans, and events still carry the trace context they are published
// with, so a service without tracing does not cut a trace.
func TestModuleWithoutTracingPassesTraceContextThrough(t *testing.T) {
	t.Parallel()
	got := &recorder{}
	src := mustSource(t, []string{"MARTY_SERVICE_NAME=orders", "MARTY_EVENTS_SYNC=true"})
	var bus fxevents.Bus
	app := fx.New(fx.NopLogger, coreModule(), fxevents.Module, fx.Replace(src), fx.Populate(&bus),
		fxevents.AsHandler(fxevents.WrapHandler(fxevents.HandlerFunc("audit", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error { got.add(ctx, env); return nil })))
	require.NoError(t, app.Err())
	require.NoError(t, app.Start(context.Background()))
	defer func() { _ = app.Stop(context.Background()) }()

	remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2},
		TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	require.NoError(t, bus.Publish(ctx, OrderCreated{OrderID: "o1"}))
	require.Equal(t, 1, got.len())
	require.Contains(t, got.got[0].Metadata["traceparent"], trace.TraceID{1}.String())
	hctx := got.ctxs[0]
	require.Equal(t, trace.TraceID{1}, trace.SpanContextFromContext(hctx).TraceID(), "the handler continues the trace")
	require.False(t, trace.SpanFromContext(hctx).IsRecording(), "no span of its own")
}

type noopHandler struct{}

func (noopHandler) Name() string                                    { return "noop" }
func (noopHandler) EventTypes() []string                            { return []string{"orders.order_created"} }
func (noopHandler) Handle(context.Context, fxevents.Envelope) error { return nil }
