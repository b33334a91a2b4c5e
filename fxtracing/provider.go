package fxtracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/martyfx/martyfx/fxcore"
)

// tracing is a provider whose exporters are not running yet: building it
// opens nothing and starts no goroutine, so a graph that fails to build
// leaks nothing. start adds the exporters.
type tracing struct {
	tp        *sdktrace.TracerProvider
	s         settings
	exporters []*exporterHandle
}

// exporterHandle is an exporter behind its batch processor, with the means
// to abandon its exports when the flush at shutdown runs out of time.
type exporterHandle struct {
	bsp sdktrace.SpanProcessor
	exp *abortableExporter
}

func newTracing(ctx context.Context, cfg Config, src *fxcore.Source, info fxcore.ServiceInfo, processors []sdktrace.SpanProcessor) (*tracing, error) {
	if src == nil {
		return nil, errors.New("fxtracing: nil config Source")
	}
	s, err := resolve(cfg, src, info)
	if err != nil {
		return nil, err
	}
	res, err := NewResource(ctx, src, info)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(s.sampler),
	}
	for _, p := range processors {
		opts = append(opts, sdktrace.WithSpanProcessor(p))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	fastPaths.Store(tp, s.fast)
	return &tracing{tp: tp, s: s}, nil
}

// start builds each exporter behind its own batch span processor.
func (t *tracing) start(ctx context.Context) error {
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
// OTEL_* variables of src, for use without Fx: the caller must call its
// Shutdown. Extra span processors (a tracetest.SpanRecorder, say) are
// registered before the exporters. Nothing connects to a collector here.
func NewTracerProvider(ctx context.Context, cfg Config, src *fxcore.Source, info fxcore.ServiceInfo, processors ...sdktrace.SpanProcessor) (*sdktrace.TracerProvider, error) {
	t, err := newTracing(ctx, cfg, src, info, processors)
	if err != nil {
		return nil, err
	}
	if err := t.start(ctx); err != nil {
		_ = t.shutdown(ctx)
		return nil, err
	}
	return t.tp, nil
}

// NewPropagator returns the propagator OTEL_PROPAGATORS names (default
// "tracecontext,baggage"), built by autoprop, so b3, b3multi, jaeger, xray,
// ottrace, none and names registered with autoprop.RegisterTextMapPropagator
// all work. An unknown name is an error.
func NewPropagator(src *fxcore.Source) (propagation.TextMapPropagator, error) {
	if src == nil {
		return nil, errors.New("fxtracing: nil config Source")
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
