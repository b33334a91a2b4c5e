package fxevents

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

// Module provides the events Config (section "events"), the Codec, the
// Registry of event types, the *Dispatcher, the DeadLetterStore and the
// Bus (memory or outbox, per MARTY_EVENTS_BUS), starts the bus and, for the
// outbox, the relay; it serves /events/dead on the admin server and adds a
// non-critical readiness check.
var Module = fx.Module("martyfx.events",
	fx.Provide(
		fxcore.ProvideConfig[Config]("events", DefaultConfig),
		DefaultCodec,
		newRegistry,
		newDispatcher,
		newBus,
		func(d *Dispatcher) DeadLetterStore { return d.DeadLetters() },
	),
	fx.Invoke(func(Bus) {}), // the relay runs even when nothing publishes
	// Protected admin routes (payloads, re-drive): they need
	// MARTY_HTTP_ADMIN_TOKEN, and are not served in production without it.
	fxhttp.AsAdminRoute("GET /events/dead", newDeadListRoute),
	fxhttp.AsAdminRoute("POST /events/dead/{id}/retry", newDeadRetryRoute),
	fxhttp.AsAdminRoute("POST /events/dead/retry", newDeadRetryAllRoute),
	fxmonitor.AsCheck(newHealthCheck),
	fxmonitor.AsAlertRule(newLagAlertRule),
	fxmonitor.AsPanel(newPanel),
	// The outbox and inbox tables; applied when the app has fxrepo.Module
	// and opens the database (they do not open it by themselves).
	fxrepo.AsOptionalMigrations("marty_events", Migrations()),
)

type handlersIn struct {
	fx.In
	Handlers   []Handler           `group:"martyfx.events.handlers"`
	Middleware []HandlerMiddleware `group:"martyfx.events.middleware"`
}

func newRegistry(in handlersIn) (*Registry, error) {
	r, _ := NewRegistry()
	for _, h := range in.Handlers {
		if t, ok := h.(Typed); ok {
			for _, p := range t.Prototypes() {
				if err := r.Register(p); err != nil {
					return nil, fmt.Errorf("%w (handler %s)", err, h.Name())
				}
			}
		}
	}
	return r, nil
}

type dispatcherIn struct {
	fx.In
	Handlers       []Handler           `group:"martyfx.events.handlers"`
	Middleware     []HandlerMiddleware `group:"martyfx.events.middleware"`
	Config         Config
	Info           fxcore.ServiceInfo
	Logger         *zap.Logger
	Registerer     prometheus.Registerer
	Codec          Codec
	TracerProvider trace.TracerProvider          `optional:"true"`
	Propagator     propagation.TextMapPropagator `optional:"true"`
	// Repo opens the database only for what needs it (the outbox,
	// Idempotent handlers): the memory bus alone leaves it closed.
	Repo fxrepo.OnDemand `optional:"true"`
}

// w3c is the propagator of an app without one in the graph (no
// fxtracing): events still carry the trace context and baggage they were
// published with, so a service without tracing does not cut a trace.
var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// newDispatcher decides tracing from the graph: the provider fxtracing
// provides, or none (a noop provider: no spans, no cost per event) when the
// app has no tracing module.
func newDispatcher(in dispatcherIn) (*Dispatcher, error) {
	tp := in.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	prop := in.Propagator
	if prop == nil {
		prop = w3c
	}
	opts := DispatcherOptions{
		Logger: in.Logger, Info: in.Info, Registerer: in.Registerer, TracerProvider: tp, Propagator: prop,
		Codec: in.Codec, Handlers: in.Handlers, Middleware: in.Middleware,
	}
	if in.Config.Bus == BusOutbox || slices.ContainsFunc(in.Handlers, needsInbox) {
		var err error
		if opts.DB, opts.UnitOfWork, err = in.Repo.Open(); err != nil {
			return nil, err
		}
	}
	return NewDispatcher(in.Config, opts)
}

type busIn struct {
	fx.In
	LC         fx.Lifecycle
	Config     Config
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	Dispatcher *Dispatcher
	Transport  Transport     `optional:"true"`
	RepoConfig fxrepo.Config `optional:"true"`
}

func newBus(in busIn) (Bus, error) {
	if in.Config.Bus == BusOutbox {
		o, err := NewOutboxBus(OutboxBusOptions{
			Dispatcher: in.Dispatcher, Transport: in.Transport, Logger: in.Logger, Registerer: in.Registerer,
			ListenDSN: listenDSN(in.RepoConfig),
		})
		if err != nil {
			return nil, err
		}
		in.LC.Append(fx.Hook{OnStart: o.Start, OnStop: o.Stop})
		return o, nil
	}
	b, err := NewMemoryBus(MemoryBusOptions{Dispatcher: in.Dispatcher, Transport: in.Transport, Registerer: in.Registerer})
	if err != nil {
		return nil, err
	}
	in.LC.Append(fx.Hook{OnStart: b.Start, OnStop: b.Stop})
	return b, nil
}

// listenDSN is fxrepo's DSN when it is Postgres: the relay LISTENs there.
func listenDSN(c fxrepo.Config) string {
	if c.Driver == fxrepo.DriverPostgres {
		return c.DSN
	}
	return ""
}

// healthReporter is implemented by the buses for the readiness check.
type healthReporter interface {
	health(ctx context.Context) error
}

func (b *MemoryBus) health(context.Context) error {
	if full := b.fullQueues(); len(full) > 0 {
		return fmt.Errorf("fxevents: handler queues full: %v", full)
	}
	return nil
}

func newHealthCheck(bus Bus, cfg Config) fxmonitor.Check {
	c := fxmonitor.Check{
		Name: "events", Kinds: fxmonitor.Readiness, Critical: false,
		Interval: 5 * time.Second, FailureThreshold: 3, Timeout: 2 * time.Second,
		Func: func(ctx context.Context) error {
			if h, ok := bus.(healthReporter); ok {
				return h.health(ctx)
			}
			return nil
		},
	}
	if cfg.Bus == BusOutbox {
		c.FailureThreshold = 1
	}
	return c
}

// newLagAlertRule is the default alert: the outbox's oldest due row has
// waited longer than MARTY_EVENTS_LAG_ALERT for a minute.
func newLagAlertRule(cfg Config) fxmonitor.AlertRule {
	return fxmonitor.AlertRule{
		Name: "MartyOutboxLagHigh", Metric: "marty_outbox_lag_seconds", Op: fxmonitor.OpGreater,
		Threshold: cfg.LagAlert.Seconds(), For: time.Minute, Severity: "warning",
		Summary:     "The event outbox is {{ $value }}s behind",
		Description: "The oldest due row of marty_outbox is older than MARTY_EVENTS_LAG_ALERT: the relay is down, too slow, or a handler keeps failing.",
	}
}
