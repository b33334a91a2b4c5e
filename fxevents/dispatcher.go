package fxevents

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
)

const tracerName = "github.com/martyfx/martyfx/fxevents"

// HandlerInfo describes a registered handler: transports create one durable
// consumer per handler, named after it, subscribed to its event types.
type HandlerInfo struct {
	Name       string
	EventTypes []string
}

// Result is the outcome of one attempt (Dispatcher.HandleOne).
type Result struct {
	// Err is the attempt's error; nil when the handler succeeded.
	Err error
	// Retry says the event must be delivered again after RetryAfter (the
	// attempt failed and attempts remain, or the context ended first).
	Retry bool
	// RetryAfter is the backoff before the next attempt.
	RetryAfter time.Duration
	// DeadLettered says the dispatcher stored the event as a dead letter:
	// acknowledge it, it must not be delivered again.
	DeadLettered bool
}

// DispatcherOptions are what NewDispatcher takes besides the Config. The
// zero value works: no metrics, no database, OpenTelemetry's global
// provider and propagator, an in-memory dead-letter ring.
type DispatcherOptions struct {
	// Logger receives the dispatcher's logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Info identifies the service: Info.Name is every envelope's Source.
	// Zero value: the binary's name.
	Info fxcore.ServiceInfo
	// Registerer receives the marty_events_* metrics; nil: they are not
	// registered.
	Registerer prometheus.Registerer
	// TracerProvider makes the publish and process spans; nil:
	// otel.GetTracerProvider(). A noop.TracerProvider
	// (go.opentelemetry.io/otel/trace/noop) turns the spans off at no cost
	// per event; trace context still passes through the Propagator.
	TracerProvider trace.TracerProvider
	// Propagator carries trace context and baggage in Envelope.Metadata;
	// nil: otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
	// Codec encodes and decodes events; nil: DefaultCodec().
	Codec Codec
	// Handlers are the event handlers (what AsHandler registers); their
	// names must be unique.
	Handlers []Handler
	// Middleware wraps every handler (what AsHandlerMiddleware registers),
	// in ascending Order: lower is outer.
	Middleware []HandlerMiddleware
	// DB is the database of the inbox (Idempotent handlers) and, with
	// Config.Bus "outbox", of the outbox and its dead letters; nil for
	// none (then neither Idempotent handlers nor the outbox bus work).
	DB *gorm.DB
	// UnitOfWork runs Idempotent handlers; nil: fxrepo.NewUnitOfWork(DB).
	UnitOfWork fxrepo.UnitOfWork
	// DeadLetters keeps dead letters; nil: the marty_outbox_dead table with
	// Config.Bus "outbox", else an in-memory ring of
	// Config.DeadLetterCapacity that re-drives through this dispatcher.
	DeadLetters DeadLetterStore
}

// Dispatcher runs handlers: one attempt at a time (HandleOne) or every
// attempt with backoff (Run), each with the middleware, a span continuing
// the publisher's trace, metrics, the handler timeout, panic recovery and
// dead-lettering. Every bus uses it; transports hand it what they receive.
type Dispatcher struct {
	cfg      Config
	source   string
	log      *zap.Logger
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	codec    Codec
	m        *metrics
	dead     DeadLetterStore
	handlers []*handlerEntry
	byName   map[string]*handlerEntry
	byType   map[string][]*handlerEntry
	traced   bool // false for a noop provider: no span is started
	db       *gorm.DB
	inbox    *inbox
}

type handlerEntry struct {
	idx   int
	name  string
	types []string
	h     Handler // with middleware
	raw   Handler
	ms    map[string]*handlerMetrics
	d     *Dispatcher
}

func (e *handlerEntry) metricsFor(typ string) *handlerMetrics {
	if hm, ok := e.ms[typ]; ok {
		return hm
	}
	return e.d.m.forHandler(e.name, typ)
}

// NewDispatcher validates cfg, checks the handlers (unique names) and
// builds the dispatcher. It registers the marty_events_* metrics on
// opts.Registerer.
func NewDispatcher(cfg Config, opts DispatcherOptions) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxevents: %w", err)
	}
	if cfg.Bus == BusOutbox && opts.DB == nil {
		return nil, errors.New("fxevents: MARTY_EVENTS_BUS=outbox needs a database (DispatcherOptions.DB): add fxrepo.Module")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry() // registered nowhere
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	if opts.Propagator == nil {
		opts.Propagator = otel.GetTextMapPropagator()
	}
	if opts.Codec == nil {
		opts.Codec = DefaultCodec()
	}
	source := opts.Info.Name
	if source == "" {
		source = binaryName()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("fxevents: register metrics: %w", err)
	}
	d := &Dispatcher{
		cfg: cfg, source: source, log: opts.Logger.Named("events"),
		tracer: opts.TracerProvider.Tracer(tracerName), prop: opts.Propagator, codec: opts.Codec, m: m,
		byName: map[string]*handlerEntry{}, byType: map[string][]*handlerEntry{},
		traced: !isNoop(opts.TracerProvider), db: opts.DB,
	}
	if err := d.addHandlers(opts.Handlers, opts.Middleware); err != nil {
		return nil, err
	}
	if opts.DB != nil {
		uow := opts.UnitOfWork
		if uow == nil {
			uow = fxrepo.NewUnitOfWork(opts.DB)
		}
		d.inbox = &inbox{db: opts.DB, uow: uow}
	}
	for _, e := range d.handlers {
		if needsInbox(e.raw) && d.inbox == nil {
			return nil, fmt.Errorf("fxevents: handler %s is Idempotent, which needs a database (DispatcherOptions.DB; with Fx add fxrepo.Module)", e.name)
		}
	}
	switch {
	case opts.DeadLetters != nil:
		d.dead = opts.DeadLetters
	case cfg.Bus == BusOutbox:
		d.dead = newOutboxDeadLetters(opts.DB, cfg)
	default:
		d.dead = newMemoryDeadLetters(cfg.DeadLetterCapacity, d.redrive)
	}
	return d, nil
}

// addHandlers registers the handlers, each wrapped in the middleware:
// sorted by ascending Order (stable), the lowest outermost.
func (d *Dispatcher) addHandlers(handlers []Handler, middleware []HandlerMiddleware) error {
	mw := slices.Clone(middleware)
	sort.SliceStable(mw, func(i, j int) bool { return mw[i].Order < mw[j].Order })
	for _, h := range handlers {
		name := h.Name()
		if name == "" {
			return fmt.Errorf("fxevents: handler %T has an empty name", h)
		}
		if _, dup := d.byName[name]; dup {
			return fmt.Errorf("fxevents: two handlers are named %q; handler names must be unique", name)
		}
		wrapped := h
		for i := len(mw) - 1; i >= 0; i-- {
			wrapped = mw[i].Wrap(wrapped)
		}
		e := &handlerEntry{idx: len(d.handlers), name: name, types: slices.Clone(h.EventTypes()), h: wrapped, raw: h,
			ms: map[string]*handlerMetrics{}, d: d}
		for _, t := range e.types {
			e.ms[t] = d.m.forHandler(name, t)
			d.byType[t] = append(d.byType[t], e)
		}
		d.handlers = append(d.handlers, e)
		d.byName[name] = e
	}
	return nil
}

// isNoop reports whether tp is OpenTelemetry's no-op provider, whose spans
// are never recorded: the dispatcher then starts none, which saves two
// allocations per span (trace context still passes through).
func isNoop(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case noop.TracerProvider, *noop.TracerProvider:
		return true
	}
	return false
}

// binaryName is the running program's name, the envelopes' Source when
// DispatcherOptions.Info has no name.
func binaryName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		name := filepath.Base(os.Args[0])
		return strings.TrimSuffix(name, filepath.Ext(name))
	}
	return "service"
}

// redrive runs a dead letter's handler again with every attempt.
func (d *Dispatcher) redrive(ctx context.Context, dl DeadLetter) error {
	return d.Run(ctx, dl.Handler, dl.Envelope)
}

// Handlers lists the registered handlers in registration order.
func (d *Dispatcher) Handlers() []HandlerInfo {
	out := make([]HandlerInfo, len(d.handlers))
	for i, e := range d.handlers {
		out[i] = HandlerInfo{Name: e.name, EventTypes: slices.Clone(e.types)}
	}
	return out
}

// HandlersFor lists the names of the handlers of an event type.
func (d *Dispatcher) HandlersFor(eventType string) []string {
	es := d.byType[eventType]
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.name
	}
	return out
}

// DeadLetters returns the dead-letter store.
func (d *Dispatcher) DeadLetters() DeadLetterStore { return d.dead }

// Config returns the configuration the dispatcher was built with.
func (d *Dispatcher) Config() Config { return d.cfg }

// Codec returns the codec events are encoded with.
func (d *Dispatcher) Codec() Codec { return d.codec }

// Backoff returns the delay after failed attempt number attempt (1-based):
// BackoffInitial·2^(attempt-1), capped at BackoffMax, with ±20% jitter.
func (d *Dispatcher) Backoff(attempt int) time.Duration {
	return backoff(d.cfg.BackoffInitial, d.cfg.BackoffMax, attempt)
}

func backoff(initial, maxDelay time.Duration, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	delay := initial
	for i := 1; i < attempt && delay < maxDelay; i++ {
		delay *= 2
	}
	delay = min(delay, maxDelay)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(delay) * jitter)
}

// metaCarrier adapts Envelope.Metadata to a TextMapCarrier, creating the
// map only when something is set.
type metaCarrier struct{ m *map[string]string }

func (c metaCarrier) Get(key string) string { return (*c.m)[key] }
func (c metaCarrier) Set(key, value string) {
	if *c.m == nil {
		*c.m = map[string]string{}
	}
	(*c.m)[key] = value
}
func (c metaCarrier) Keys() []string {
	out := make([]string, 0, len(*c.m))
	for k := range *c.m {
		out = append(out, k)
	}
	return out
}

// metaReader is Envelope.Metadata as the carrier of Extract. A map is
// pointer-shaped, so passing it in the interface does not move the
// envelope to the heap as metaCarrier's pointer does: one allocation less
// per handled event. Set writes only into an existing map (Extract never
// sets).
type metaReader map[string]string

func (m metaReader) Get(key string) string { return m[key] }
func (m metaReader) Set(key, value string) {
	if m != nil {
		m[key] = value
	}
}
func (m metaReader) Keys() []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// metaWriter is the carrier of Inject, taken from a pool so that neither
// it nor the envelope is allocated per event; the map is created only
// when something is set.
type metaWriter struct{ m map[string]string }

func (w *metaWriter) Get(key string) string { return w.m[key] }
func (w *metaWriter) Set(key, value string) {
	if w.m == nil {
		w.m = map[string]string{}
	}
	w.m[key] = value
}
func (w *metaWriter) Keys() []string { return metaReader(w.m).Keys() }

var metaWriters = sync.Pool{New: func() any { return new(metaWriter) }}

// inject writes ctx's trace context and baggage into env.Metadata.
func (d *Dispatcher) inject(ctx context.Context, env *Envelope) {
	w := metaWriters.Get().(*metaWriter)
	w.m = env.Metadata
	d.prop.Inject(ctx, w)
	env.Metadata = w.m
	w.m = nil
	metaWriters.Put(w)
}

// startPublish builds ev's envelope and starts its publish span; the
// envelope's metadata carries the span's context, baggage and correlation id.
func (d *Dispatcher) startPublish(ctx context.Context, ev Event) (trace.Span, Envelope, error) {
	env, err := NewEnvelope(d.source, ev, d.codec)
	if err != nil {
		return nil, Envelope{}, err
	}
	span := noSpan
	if d.traced {
		ctx, span = d.tracer.Start(ctx, d.m.forType(env.Type).spanName, producerSpan...)
	}
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "martyfx"),
			attribute.String("messaging.operation.type", "publish"),
			attribute.String("messaging.destination.name", env.Type),
			attribute.String("messaging.message.id", env.ID),
		)
	}
	d.inject(ctx, &env)
	if corr := CorrelationID(ctx); corr != "" && corr != env.ID {
		if env.Metadata == nil {
			env.Metadata = map[string]string{}
		}
		env.Metadata[MetaCorrelationID] = corr
	}
	observe(ctx, env)
	return span, env, nil
}

// noSpan is the span of an event when the dispatcher starts none.
var noSpan = trace.SpanFromContext(context.Background())

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// HandleOne runs attempt number attempt (1-based) of the named handler on
// env: middleware, a consumer span whose parent is the publisher's span
// (from env.Metadata), the correlation id and codec in ctx, the handler
// timeout, panic recovery and the metrics. On failure it says whether to
// retry and after how long; after the last attempt (or a Permanent error) it
// stores a dead letter, logs and counts it, and says so. If ctx ended, the
// result asks for a retry and nothing is dead-lettered.
func (d *Dispatcher) HandleOne(ctx context.Context, handler string, env Envelope, attempt int) Result {
	e, ok := d.byName[handler]
	if !ok {
		return Result{Err: fmt.Errorf("%w %q", ErrUnknownHandler, handler)}
	}
	return d.handleOne(ctx, e, env, attempt)
}

func (d *Dispatcher) handleOne(ctx context.Context, e *handlerEntry, env Envelope, attempt int) Result {
	hm := e.metricsFor(env.Type)
	hctx := d.prop.Extract(ctx, metaReader(env.Metadata))
	span := trace.SpanFromContext(hctx) // no SDK: pass the context through
	if d.traced {
		hctx, span = d.tracer.Start(hctx, hm.spanName, consumerSpan...)
	}
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "martyfx"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.destination.name", env.Type),
			attribute.String("messaging.message.id", env.ID),
			attribute.String("messaging.consumer.group.name", e.name),
			attribute.Int("messaging.delivery.attempt", attempt),
		)
	}
	start := time.Now()
	var deadline time.Time
	if d.cfg.HandlerTimeout > 0 {
		deadline = start.Add(d.cfg.HandlerTimeout)
	}
	tctx := handlerContext(hctx, ctxInfo{correlationID: env.CorrelationID(), codec: d.codec}, deadline)
	tctx.inbox = d.inbox
	err := safeHandle(tctx, e.h, env)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && tctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("handler timeout %s exceeded: %w", d.cfg.HandlerTimeout, err)
	}
	tctx.cancel()
	hm.duration.Observe(time.Since(start).Seconds())
	endSpan(span, err)
	if err == nil {
		hm.handled.Inc()
		return Result{}
	}
	hm.failed.Inc()
	if ctx.Err() != nil {
		return Result{Err: err, Retry: true}
	}
	if attempt < d.cfg.MaxAttempts && !IsPermanent(err) {
		hm.retried.Inc()
		delay := d.Backoff(attempt)
		d.log.Debug("event handler failed; retrying", zap.String("handler", e.name), zap.String("type", env.Type),
			zap.String("event_id", env.ID), zap.Int("attempt", attempt), zap.Duration("retry_after", delay), zap.Error(err))
		return Result{Err: err, Retry: true, RetryAfter: delay}
	}
	d.deadLetter(ctx, e.name, env, err, attempt, hm)
	return Result{Err: err, DeadLettered: true}
}

var (
	consumerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	producerSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
)

// DeadLetter stores env as a dead letter of handler with err after attempts
// attempts, logging and counting it. Transports call it for messages they
// give up on themselves; HandleOne and Run already do.
func (d *Dispatcher) DeadLetter(ctx context.Context, handler string, env Envelope, err error, attempts int) {
	var hm *handlerMetrics
	if e, ok := d.byName[handler]; ok {
		hm = e.metricsFor(env.Type)
	} else {
		hm = d.m.forHandler(handler, env.Type)
	}
	d.deadLetter(ctx, handler, env, err, attempts, hm)
}

func (d *Dispatcher) deadLetter(ctx context.Context, handler string, env Envelope, err error, attempts int, hm *handlerMetrics) {
	// Stored before it is counted: whoever sees the counter move finds the
	// dead letter in the store.
	defer hm.dead.Inc()
	d.log.Error("event dead-lettered", zap.String("handler", handler), zap.String("type", env.Type),
		zap.String("event_id", env.ID), zap.String("aggregate_id", env.AggregateID), zap.Int("attempts", attempts),
		zap.String("trace_id", trace.SpanContextFromContext(d.prop.Extract(context.Background(), metaCarrier{&env.Metadata})).TraceID().String()),
		zap.Error(err))
	dl := DeadLetter{Handler: handler, Envelope: env, Error: err.Error(), Attempts: attempts, At: time.Now().UTC()}
	if aerr := d.dead.Add(context.WithoutCancel(ctx), dl); aerr != nil {
		d.log.Error("store dead letter", zap.String("event_id", env.ID), zap.Error(aerr))
	}
}

// Run runs the named handler on env with every attempt, sleeping the backoff
// between them; it returns nil on success, the last error once the event
// was dead-lettered, or ctx's error if ctx ended first (not dead-lettered).
func (d *Dispatcher) Run(ctx context.Context, handler string, env Envelope) error {
	e, ok := d.byName[handler]
	if !ok {
		return fmt.Errorf("%w %q", ErrUnknownHandler, handler)
	}
	return d.run(ctx, e, env)
}

func (d *Dispatcher) run(ctx context.Context, e *handlerEntry, env Envelope) error {
	for attempt := 1; ; attempt++ {
		res := d.handleOne(ctx, e, env, attempt)
		if !res.Retry {
			return res.Err
		}
		if ctx.Err() != nil {
			return errors.Join(res.Err, ctx.Err())
		}
		t := time.NewTimer(res.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(res.Err, ctx.Err())
		case <-t.C:
		}
	}
}

// safeHandle calls h, turning a panic into an error with the stack.
func safeHandle(ctx context.Context, h Handler, env Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", r, debug.Stack())
		}
	}()
	return h.Handle(ctx, env)
}
