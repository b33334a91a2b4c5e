package fxevents

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
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
	Handlers   []Handler           `group:"martyfx.events.handlers"`
	Middleware []HandlerMiddleware `group:"martyfx.events.middleware"`
	Config     Config
	Info       fxcore.ServiceInfo
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Codec      Codec
	Tracer     trace.TracerProvider          `optional:"true"`
	Propagator propagation.TextMapPropagator `optional:"true"`
	// Repo opens the database only for what needs it (the outbox,
	// Idempotent handlers): the memory bus alone leaves it closed.
	Repo fxrepo.OnDemand `optional:"true"`
}

func newDispatcher(in dispatcherIn) (*Dispatcher, error) {
	p := DispatcherParams{
		Config: in.Config, Source: in.Info.Name, Log: in.Log, Registerer: in.Registerer,
		Tracer: in.Tracer, Propagator: in.Propagator, Codec: in.Codec,
		Handlers: in.Handlers, Middleware: in.Middleware,
	}
	if in.Config.Bus == BusOutbox || slices.ContainsFunc(in.Handlers, needsInbox) {
		var err error
		if p.DB, p.UnitOfWork, err = in.Repo.Open(); err != nil {
			return nil, err
		}
	}
	if in.Config.Bus == BusOutbox {
		if p.DB == nil {
			return nil, fmt.Errorf("fxevents: MARTY_EVENTS_BUS=outbox needs a *gorm.DB in the graph: add fxrepo.Module")
		}
		p.DeadLetters = newOutboxDeadLetters(p.DB, in.Config)
	}
	return NewDispatcher(p)
}

type busIn struct {
	fx.In
	LC         fx.Lifecycle
	Shutdowner fx.Shutdowner
	Config     Config
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Dispatcher *Dispatcher
	Transport  Transport       `optional:"true"`
	Repo       fxrepo.OnDemand `optional:"true"`
	RepoConfig fxrepo.Config   `optional:"true"`
}

func newBus(in busIn) (Bus, error) {
	if in.Config.Bus == BusOutbox {
		return newOutboxBus(in)
	}
	b := NewMemoryBus(in.Dispatcher, in.Transport)
	if err := in.Registerer.Register(gaugeCollector{
		desc: prometheus.NewDesc("marty_events_queue_depth", "Events waiting in a handler's queue (memory bus).", []string{"handler"}, nil),
		fn: func(emit func(float64, ...string)) {
			for name, n := range b.Depths() {
				emit(float64(n), name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("fxevents: register metrics: %w", err)
	}
	in.LC.Append(fx.Hook{
		OnStart: func(context.Context) error { b.Start(); return nil },
		OnStop:  b.Stop,
	})
	return b, nil
}

// healthReporter is implemented by the buses for the readiness check.
type healthReporter interface {
	health(ctx context.Context) error
}

func (b *MemoryBus) health(context.Context) error {
	if full := b.FullQueues(); len(full) > 0 {
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

func newOutboxBus(in busIn) (Bus, error) {
	m, err := newRelayMetrics(in.Registerer)
	if err != nil {
		return nil, fmt.Errorf("fxevents: register metrics: %w", err)
	}
	dead, _ := in.Dispatcher.dead.(*outboxDeadLetters)
	if dead == nil {
		return nil, fmt.Errorf("fxevents: the outbox needs its dead-letter table store")
	}
	dead.m = m
	db, _, err := in.Repo.Open() // opened by the dispatcher already
	if err != nil {
		return nil, err
	}
	pg := db.Name() == "postgres"
	r := &relay{
		d: in.Dispatcher, db: db, cfg: in.Config, pg: pg, transport: in.Transport,
		log: in.Log.Named("events.relay"), dead: dead, m: m,
	}
	if pg && in.RepoConfig.Driver == fxrepo.DriverPostgres {
		r.dsn = in.RepoConfig.DSN
	}
	o := &OutboxBus{d: in.Dispatcher, db: db, cfg: in.Config, pg: pg, relay: r}
	if !pg {
		o.signal = r.wakeAll
	}
	dead.notify = r.wakeAll
	if in.Config.Relay {
		in.LC.Append(fx.Hook{
			OnStart: func(context.Context) error { r.start(); return nil },
			OnStop:  r.stop,
		})
	}
	return o, nil
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
