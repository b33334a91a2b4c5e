package fxtracing

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/propagators/autoprop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/martyfx/martyfx/fxcore"
)

// tracing is a provider whose exporters are not running yet: building it
// opens nothing and starts no goroutine, so a graph that fails to build
// leaks nothing. start adds the exporters.
type tracing struct {
	tp *sdktrace.TracerProvider
	s  settings
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
		t.tp.RegisterSpanProcessor(sdktrace.NewBatchSpanProcessor(exp,
			sdktrace.WithMaxQueueSize(t.s.batch.queueSize),
			sdktrace.WithMaxExportBatchSize(t.s.batch.batchSize),
			sdktrace.WithBatchTimeout(t.s.batch.delay),
			sdktrace.WithExportTimeout(t.s.batch.timeout),
		))
	}
	return nil
}

// shutdown flushes and stops the exporters within ctx.
func (t *tracing) shutdown(ctx context.Context) error {
	defer fastPaths.Delete(t.tp)
	return t.tp.Shutdown(ctx)
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
