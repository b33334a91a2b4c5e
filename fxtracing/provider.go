package fxtracing

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
)

// tracing is a provider whose exporters are not running yet: building it
// opens nothing and starts no goroutine, so a graph that fails to build
// leaks nothing. start adds the exporters.
type tracing struct {
	tp        *sdktrace.TracerProvider
	s         settings
	log       *zap.Logger
	exporters []*exporterHandle
}

// exporterHandle is an exporter behind its batch processor, with the means
// to abandon its exports when the flush at shutdown runs out of time.
type exporterHandle struct {
	bsp sdktrace.SpanProcessor
	exp *abortableExporter
}

// TracerProviderOptions are what NewTracerProvider takes besides Config.
type TracerProviderOptions struct {
	// Source holds the OTEL_* variables (and MARTY_SERVICE_NAME); nil: the
	// process environment.
	Source *fxcore.Source
	// Info identifies the service in the resource. Zero value: not
	// production (the development defaults: no exporter unless
	// OTEL_TRACES_EXPORTER names one), name from OTEL_SERVICE_NAME or the
	// binary, as fxcore.NewServiceInfo resolves them.
	Info fxcore.ServiceInfo
	// Processors are added to the provider before the exporters, e.g. a
	// tracetest.SpanRecorder; they are shut down with it.
	Processors []sdktrace.SpanProcessor
	// Logger gets the "tracing started" line; nil: zap.NewNop().
	Logger *zap.Logger
}

// withDefaults fills the zero fields.
func (o TracerProviderOptions) withDefaults() TracerProviderOptions {
	if o.Source == nil {
		o.Source = processSource()
	}
	if o.Info == (fxcore.ServiceInfo{}) {
		o.Info = fxcore.NewServiceInfo(o.Source, fxcore.DefaultConfig(), fxcore.ServiceConfig{})
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return o
}

// processSource is the process environment, without a config file.
func processSource() *fxcore.Source {
	src, _ := fxcore.NewSourceFrom("", os.Environ()) // without a file it cannot fail
	return src
}

// newTracing builds the provider, without its exporters: nothing runs yet.
func newTracing(ctx context.Context, cfg Config, o TracerProviderOptions) (*tracing, error) {
	o = o.withDefaults()
	s, err := resolve(cfg, o.Source, o.Info)
	if err != nil {
		return nil, err
	}
	res, err := newResource(ctx, o.Source, o.Info)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(s.sampler),
	}
	for _, p := range o.Processors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	fastPaths.Store(tp, s.fast)
	return &tracing{tp: tp, s: s, log: o.Logger.Named("tracing")}, nil
}

// start builds each exporter behind its own batch span processor and logs
// the setup; on failure it shuts down what it started.
func (t *tracing) start(ctx context.Context) error {
	if err := t.startExporters(ctx); err != nil {
		_ = t.shutdown(ctx)
		return err
	}
	exporters, protocol, endpoint := t.describe()
	fields := []zap.Field{zap.String("exporter", exporters)}
	if protocol != "" {
		fields = append(fields, zap.String("protocol", protocol), zap.String("endpoint", endpoint))
	}
	fields = append(fields,
		zap.String("sampler", t.s.samplerDesc),
		zap.Strings("propagators", t.s.propagators))
	t.log.Info("tracing started", fields...)
	return nil
}

func (t *tracing) startExporters(ctx context.Context) error {
	for _, name := range t.s.exporters {
		exp, err := newExporter(ctx, name, t.s)
		if err != nil {
			return fmt.Errorf("fxtracing: create %s exporter: %w", name, err)
		}
		h := &exporterHandle{exp: newAbortable(exp)}
		h.bsp = sdktrace.NewBatchSpanProcessor(h.exp,
			sdktrace.WithMaxQueueSize(t.s.batch.queueSize),
			sdktrace.WithMaxExportBatchSize(t.s.batch.batchSize),
			sdktrace.WithBatchTimeout(t.s.batch.delay),
			sdktrace.WithExportTimeout(t.s.batch.timeout),
		)
		t.exporters = append(t.exporters, h)
		t.tp.RegisterSpanProcessor(h.bsp)
	}
	return nil
}

// shutdown flushes pending spans and stops the exporters, all by ctx's
// deadline. When the flush runs out of time (a collector that hangs), the
// exports still in flight are abandoned so that no goroutine or connection
// outlives the stop, and the flush's error is returned.
func (t *tracing) shutdown(ctx context.Context) error {
	defer fastPaths.Delete(t.tp)
	flushCtx, cancel := beforeDeadline(ctx)
	err := t.tp.Shutdown(flushCtx)
	cancel()
	if err == nil {
		return nil
	}
	for _, h := range t.exporters {
		h.exp.abort()
	}
	for _, h := range t.exporters {
		// Processors the provider had no time left for; no-op for the others.
		_ = h.bsp.Shutdown(ctx)
	}
	for _, h := range t.exporters {
		select {
		case <-h.exp.closed:
		case <-ctx.Done():
		}
	}
	return err
}

// beforeDeadline returns a context that ends a little before ctx's deadline
// (a tenth of the time left, at most 100ms), so that a flush cut short
// leaves time to abandon the exports and stop in time.
func beforeDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(deadline)/10, 100*time.Millisecond)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// abortableExporter lets shutdown cut short the exports in flight (their
// own timeout is OTEL_BSP_EXPORT_TIMEOUT, 30s by default) and makes sure the
// wrapped exporter is shut down, closing its connections, even when the
// processor hands it an expired context.
type abortableExporter struct {
	sdktrace.SpanExporter
	aborted context.Context
	abort   context.CancelFunc
	closed  chan struct{}
	once    sync.Once
}

func newAbortable(exp sdktrace.SpanExporter) *abortableExporter {
	ctx, cancel := context.WithCancel(context.Background())
	return &abortableExporter{SpanExporter: exp, aborted: ctx, abort: cancel, closed: make(chan struct{})}
}

// ExportSpans exports until done or aborted.
func (e *abortableExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.aborted, cancel)
	defer stop()
	return e.SpanExporter.ExportSpans(ctx, spans)
}

// Shutdown shuts the wrapped exporter down, with a short grace period of its
// own when ctx has already expired.
func (e *abortableExporter) Shutdown(ctx context.Context) error {
	var err error
	e.once.Do(func() {
		defer close(e.closed)
		if ctx.Err() != nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
		}
		err = e.SpanExporter.Shutdown(ctx)
	})
	return err
}

// describe is what the start log line says about the setup.
func (t *tracing) describe() (exporters, protocol, endpoint string) {
	if len(t.s.exporters) == 0 {
		return "none", "", ""
	}
	for _, name := range t.s.exporters {
		if name == "otlp" {
			protocol, endpoint = t.s.otlp.protocol, t.s.otlp.describeEndpoint()
		}
	}
	return strings.Join(t.s.exporters, ","), protocol, endpoint
}

// NewTracerProvider builds a running SDK tracer provider from cfg and the
// OTEL_* variables, for use without Fx: the same provider Module builds,
// with its exporters started. The caller must call its Shutdown. Nothing
// connects to a collector here. cfg is validated first.
func NewTracerProvider(ctx context.Context, cfg Config, opts TracerProviderOptions) (*sdktrace.TracerProvider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxtracing: %w", err)
	}
	t, err := newTracing(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	return t.tp, nil
}

// NewPropagator returns the propagator OTEL_PROPAGATORS of src names
// (default "tracecontext,baggage"; a nil src is the process environment),
// built by autoprop, so b3, b3multi, jaeger, xray, ottrace, none and names
// registered with autoprop.RegisterTextMapPropagator all work. An unknown
// name is an error.
func NewPropagator(src *fxcore.Source) (propagation.TextMapPropagator, error) {
	if src == nil {
		src = processSource()
	}
	names := resolvePropagatorNames(src)
	p, err := autoprop.TextMapPropagator(names...)
	if err != nil {
		return nil, fmt.Errorf("fxtracing: invalid %s=%q: %w (want a comma-separated list of tracecontext, baggage, b3, b3multi, jaeger, xray, ottrace, none)",
			envPropagators, strings.Join(names, ","), err)
	}
	return p, nil
}

// fastPaths maps each provider fxtracing built to what its sampler is known
// to drop, for Run. An entry lives from construction to shutdown.
var fastPaths sync.Map // *sdktrace.TracerProvider -> fastPath
