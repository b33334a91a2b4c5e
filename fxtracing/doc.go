// Package fxtracing gives a martyfx service OpenTelemetry tracing configured
// the standard way, from the OTEL_* environment variables.
//
// Including [Module] provides a [trace.TracerProvider] (and the SDK's
// *sdktrace.TracerProvider), a [propagation.TextMapPropagator], sets both as
// the OpenTelemetry globals at start so third-party instrumentation works, and
// shuts the provider down at stop, flushing pending spans within the stop
// deadline. The resource carries the service identity from
// [fxcore.ServiceInfo], OTEL_RESOURCE_ATTRIBUTES and what the host, process,
// OS and container detectors find.
//
// The exporter follows OTEL_TRACES_EXPORTER (otlp, console, none), with the
// OTLP protocol, endpoint, headers, timeout and compression from
// OTEL_EXPORTER_OTLP_*; when the variable is unset it is none in a
// development environment and otlp elsewhere. The sampler follows
// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, the propagators
// OTEL_PROPAGATORS. The batch span processor is tuned with MARTY_TRACING_*.
//
// Application code makes spans with [Run], which records the error, sets the
// status and ends the span even when fn panics:
//
//	err := fxtracing.Run(ctx, "orders.reserve", func(ctx context.Context) error {
//		return reserve(ctx, id)
//	})
//
// [LogFields] and [Logger] put trace_id and span_id on log entries, and
// [SetBaggage] and [Baggage] read and write W3C baggage members.
//
// Tests and the fxtest harness record spans in memory by adding a span
// processor to the provider with [AsSpanProcessor], for example
// fxtracing.AsSpanProcessor(tracetest.NewSpanRecorder()).
//
// # Without Fx
//
// [NewTracerProvider] builds the provider Module builds, with its exporters
// running (the caller shuts it down), and [NewPropagator] the propagator;
// both read the OTEL_* variables of a *fxcore.Source, or of the process
// environment when it is nil:
//
//	tp, err := fxtracing.NewTracerProvider(ctx, fxtracing.DefaultConfig(), fxtracing.TracerProviderOptions{
//		Info:   fxcore.ServiceInfo{Name: "orders", Environment: "production"},
//		Logger: log,
//	})
//	defer tp.Shutdown(ctx)
//	prop, err := fxtracing.NewPropagator(nil)
package fxtracing
