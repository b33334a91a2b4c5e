package fxtracing

import (
	"context"
	"fmt"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans Run and Start make.
const ScopeName = "github.com/martyfx/martyfx/fxtracing"

// Run runs fn in a span called name, a child of the span in ctx, and passes
// fn the span's context. An error from fn is recorded on the span and sets
// its status to Error; Run returns it unchanged. When fn panics, the panic is
// recorded (with a stack trace), the span ended, and the panic resumed with
// the same value.
//
// The span comes from the provider of the recording span in ctx, else from
// the global provider (which Module sets). When that is a provider fxtracing
// built, the parent in ctx is not sampled, and the sampler is known to drop
// the children of such parents (any parentbased_* sampler, or always_off),
// Run calls fn(ctx) directly: no span, no allocation. fn then sees the
// parent's span context instead of a child's with a fresh span ID; the trace
// ID and the unsampled flag it propagates are the same.
func Run(ctx context.Context, name string, fn func(context.Context) error, opts ...trace.SpanStartOption) error {
	parent := trace.SpanFromContext(ctx)
	tr, fp := tracerFor(parent)
	if fp.dropsUnsampledKids {
		if sc := parent.SpanContext(); sc.IsValid() && !sc.IsSampled() {
			return fn(ctx)
		}
	}
	ctx, span := tr.Start(ctx, name, opts...)
	if !span.IsRecording() {
		// Nothing to record: keep the span context for fn and skip the rest.
		defer span.End()
		return fn(ctx)
	}
	return runRecording(ctx, span, fn)
}

func runRecording(ctx context.Context, span trace.Span, fn func(context.Context) error) (err error) {
	returned := false
	defer func() {
		if returned {
			return
		}
		// fn panicked, or called runtime.Goexit (t.FailNow does).
		if r := recover(); r != nil {
			span.RecordError(panicError{r}, trace.WithStackTrace(true))
			span.SetStatus(codes.Error, fmt.Sprintf("panic: %v", r))
			span.End()
			panic(r)
		}
		span.SetStatus(codes.Error, "goroutine exited")
		span.End()
	}()
	err = fn(ctx)
	returned = true
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	return err
}

// panicError carries a recovered panic value into RecordError.
type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// Start starts a span called name as a child of the span in ctx, from the
// same provider Run would use, for the rare case Run does not fit. The
// caller must End the span.
func Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	tr, _ := tracerFor(trace.SpanFromContext(ctx))
	return tr.Start(ctx, name, opts...)
}

// cachedTracer remembers the tracer of the last SDK provider used: looking
// a tracer up takes a lock in the SDK.
type cachedTracer struct {
	tp *sdktrace.TracerProvider
	tr trace.Tracer
	fp fastPath
}

var lastTracer atomic.Pointer[cachedTracer]

// tracerFor returns the tracer for children of parent: from the provider of
// a recording parent, so children stay with their parent's provider, else
// from the global provider.
func tracerFor(parent trace.Span) (trace.Tracer, fastPath) {
	var tp trace.TracerProvider
	if parent.IsRecording() {
		tp = parent.TracerProvider()
	} else {
		tp = otel.GetTracerProvider()
	}
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok {
		return tp.Tracer(ScopeName), fastPath{}
	}
	if c := lastTracer.Load(); c != nil && c.tp == sdk {
		return c.tr, c.fp
	}
	c := &cachedTracer{tp: sdk, tr: sdk.Tracer(ScopeName)}
	if fp, ok := fastPaths.Load(sdk); ok {
		c.fp = fp.(fastPath)
	}
	lastTracer.Store(c)
	return c.tr, c.fp
}
