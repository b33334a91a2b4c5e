package fxtracing

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// LogFields returns trace_id and span_id of the span in ctx as zap fields,
// or nothing when ctx has no valid span context. Request logging in the
// other modules appends them to every entry written for a request.
func LogFields(ctx context.Context) []zap.Field {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []zap.Field{
		zap.String("trace_id", sc.TraceID().String()),
		zap.String("span_id", sc.SpanID().String()),
	}
}

// Logger returns log with trace_id and span_id of the span in ctx, or log
// itself when ctx has no valid span context.
func Logger(ctx context.Context, log *zap.Logger) *zap.Logger {
	fields := LogFields(ctx)
	if fields == nil {
		return log
	}
	return log.With(fields...)
}
