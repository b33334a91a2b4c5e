package fxtracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
)

// Module provides trace.TracerProvider, *sdktrace.TracerProvider and
// propagation.TextMapPropagator, configured from the OTEL_* variables and
// the "tracing" Config section. At start it starts the exporters and makes
// the provider and propagator (as the graph has them, after any fx.Decorate
// or fx.Replace) the OpenTelemetry globals; at stop it flushes
// pending spans within the stop deadline. A flush that fails (collector
// down, deadline reached) is logged, never a failed stop.
var Module = fx.Module("martyfx.tracing",
	fx.Provide(
		fxcore.ProvideConfig[Config]("tracing", DefaultConfig),
		newModuleProvider,
		func(tp *sdktrace.TracerProvider) trace.TracerProvider { return tp },
		NewPropagator,
	),
	fx.Invoke(installGlobals),
)

// installGlobals makes the graph's provider and propagator the OpenTelemetry
// globals at start. It takes them from the graph after any fx.Decorate or
// fx.Replace, so an overridden provider (an in-memory one in a test, say) is
// the one third-party instrumentation and Run use.
func installGlobals(lc fx.Lifecycle, tp trace.TracerProvider, prop propagation.TextMapPropagator) {
	lc.Append(fx.StartHook(func() {
		otel.SetTracerProvider(tp)
		otel.SetTextMapPropagator(prop)
	}))
}

type providerParams struct {
	fx.In

	Lifecycle  fx.Lifecycle
	Config     Config
	Source     *fxcore.Source
	Info       fxcore.ServiceInfo
	Logger     *zap.Logger
	Processors []sdktrace.SpanProcessor `group:"martyfx.tracing.span_processors"`
}

// newModuleProvider builds what NewTracerProvider builds, but starts the
// exporters (and their batch goroutines) in OnStart, so that a graph that
// fails to build leaks nothing.
func newModuleProvider(p providerParams) (*sdktrace.TracerProvider, error) {
	t, err := newTracing(context.Background(), p.Config, TracerProviderOptions{
		Source: p.Source, Info: p.Info, Processors: p.Processors, Logger: p.Logger,
	})
	if err != nil {
		return nil, err
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: t.start,
		OnStop: func(ctx context.Context) error {
			// The flush gives up a little before the stop deadline, so
			// that an unreachable collector never turns a clean stop into
			// a failed one (Fx fails a stop whose deadline passed).
			ctx, cancel := flushContext(ctx)
			defer cancel()
			if err := t.shutdown(ctx); err != nil {
				t.log.Warn("tracing: pending spans were not all flushed at shutdown", zap.Error(err))
			}
			return nil
		},
	})
	return t.tp, nil
}

// flushContext is ctx with its deadline moved earlier by a fifth of the
// time left, at most a second.
func flushContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := min(time.Until(deadline)/5, time.Second)
	return context.WithDeadline(ctx, deadline.Add(-margin))
}
