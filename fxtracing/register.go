package fxtracing

import (
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
)

const processorGroup = "martyfx.tracing.span_processors"

// AsSpanProcessor adds a span processor to the tracer provider, next to the
// exporters OTEL_TRACES_EXPORTER selects. ctor is an sdktrace.SpanProcessor
// or a constructor returning one (and optionally an error), with its
// parameters injected. The processor is shut down with the provider.
//
// Tests and the fxtest harness use it to record spans in memory; a
// tracetest.SpanRecorder sees each span synchronously as it ends:
//
//	rec := tracetest.NewSpanRecorder()
//	app := fxtest.New(t, fxcore.Module, fxtracing.Module, fxtracing.AsSpanProcessor(rec), ...)
//	... rec.Ended() ...
//
// A custom exporter is added the same way, wrapped in
// sdktrace.NewBatchSpanProcessor.
func AsSpanProcessor(ctor any) fx.Option {
	return fxcore.Group(processorGroup, "fxtracing.AsSpanProcessor", ctor, func(v any) (sdktrace.SpanProcessor, error) {
		if p, ok := v.(sdktrace.SpanProcessor); ok && p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("got %T, want a go.opentelemetry.io/otel/sdk/trace.SpanProcessor", v)
	})
}
