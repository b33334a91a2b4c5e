package bench

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxtracing"
)

// discardExporter accepts every batch and keeps nothing: the cost measured
// is the span's, not an exporter's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// tracingProvider builds the provider fxtracing.Module would, for env, with
// a batch span processor over discardExporter, and makes it the global one
// (which fxtracing.Run uses for root spans).
func tracingProvider(b *testing.B, env ...string) *sdktrace.TracerProvider {
	b.Helper()
	src, err := fxcore.NewSourceFrom("", append(env, "OTEL_TRACES_EXPORTER=none"))
	if err != nil {
		b.Fatal(err)
	}
	info := fxcore.ServiceInfo{Name: "bench", Version: "v0", Environment: "production", InstanceID: "bench-1"}
	tp, err := fxtracing.NewTracerProvider(context.Background(), fxtracing.Config{}, fxtracing.TracerProviderOptions{
		Source: src, Info: info, Processors: []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(discardExporter{})},
	})
	if err != nil {
		b.Fatal(err)
	}
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(prev)
	})
	return tp
}

var errBench = errors.New("bench")

func work(context.Context) error { return nil }

// BenchmarkTracingRun compares fxtracing.Run with calling fn bare, and with
// the OpenTelemetry SDK used by hand (tracer.Start + span.End).
func BenchmarkTracingRun(b *testing.B) {
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true,
	}))

	b.Run("bare-fn", func(b *testing.B) {
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			_ = work(ctx)
		}
	})

	// A request whose caller did not sample it: the default parent-based
	// sampler drops its spans.
	b.Run("unsampled-parent/fxtracing.Run", func(b *testing.B) {
		tracingProvider(b)
		b.ReportAllocs()
		for b.Loop() {
			_ = fxtracing.Run(unsampledParent, "op", work)
		}
	})
	b.Run("unsampled-parent/sdk-start-end", func(b *testing.B) {
		tr := tracingProvider(b).Tracer("bench")
		b.ReportAllocs()
		for b.Loop() {
			ctx, span := tr.Start(unsampledParent, "op")
			_ = work(ctx)
			span.End()
		}
	})

	// A root span the sampler drops (OTEL_TRACES_SAMPLER=always_off).
	b.Run("unsampled-root/fxtracing.Run", func(b *testing.B) {
		tracingProvider(b, "OTEL_TRACES_SAMPLER=always_off")
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			_ = fxtracing.Run(ctx, "op", work)
		}
	})
	b.Run("unsampled-root/sdk-start-end", func(b *testing.B) {
		tr := tracingProvider(b, "OTEL_TRACES_SAMPLER=always_off").Tracer("bench")
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			c, span := tr.Start(ctx, "op")
			_ = work(c)
			span.End()
		}
	})

	// Sampled root spans through the batch span processor.
	b.Run("sampled/fxtracing.Run", func(b *testing.B) {
		tracingProvider(b)
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			_ = fxtracing.Run(ctx, "op", work)
		}
	})
	b.Run("sampled-error/fxtracing.Run", func(b *testing.B) {
		tracingProvider(b)
		b.ReportAllocs()
		ctx := context.Background()
		fail := func(context.Context) error { return errBench }
		for b.Loop() {
			_ = fxtracing.Run(ctx, "op", fail)
		}
	})
	b.Run("sampled/sdk-start-end", func(b *testing.B) {
		tr := tracingProvider(b).Tracer("bench")
		b.ReportAllocs()
		ctx := context.Background()
		for b.Loop() {
			c, span := tr.Start(ctx, "op")
			_ = work(c)
			span.End()
		}
	})
}
