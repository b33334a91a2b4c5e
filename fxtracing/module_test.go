package fxtracing

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
)

func spanByName(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	require.Len(t, found, 1, "spans named %q", name)
	return found[0]
}

func TestRunRecordsSpans(t *testing.T) {
	a := startApp(t, []string{"MARTY_SERVICE_NAME=orders"})
	require.Same(t, a.tp, otel.GetTracerProvider(), "Module sets the global provider")

	ctx := context.Background()
	errDeclined := errors.New("card declined")
	var innerCtx context.Context
	err := Run(ctx, "checkout", func(ctx context.Context) error {
		require.NoError(t, Run(ctx, "reserve", func(ctx context.Context) error {
			innerCtx = ctx
			return nil
		}, trace.WithAttributes(attribute.String("sku", "A-1"))))
		return Run(ctx, "charge", func(context.Context) error { return errDeclined })
	}, trace.WithSpanKind(trace.SpanKindServer))
	require.ErrorIs(t, err, errDeclined, "Run returns fn's error unchanged")

	checkout := spanByName(t, a.rec, "checkout")
	reserve := spanByName(t, a.rec, "reserve")
	charge := spanByName(t, a.rec, "charge")
	require.Equal(t, trace.SpanKindServer, checkout.SpanKind())
	require.False(t, checkout.Parent().IsValid(), "checkout is a root span")
	for _, child := range []sdktrace.ReadOnlySpan{reserve, charge} {
		require.Equal(t, checkout.SpanContext().TraceID(), child.SpanContext().TraceID())
		require.Equal(t, checkout.SpanContext().SpanID(), child.Parent().SpanID())
	}
	require.Equal(t, reserve.SpanContext(), trace.SpanContextFromContext(innerCtx), "fn gets the span's context")
	require.Contains(t, reserve.Attributes(), attribute.String("sku", "A-1"))
	require.Equal(t, codes.Unset, reserve.Status().Code)
	require.Equal(t, sdktrace.Status{Code: codes.Error, Description: "card declined"}, charge.Status())
	require.Len(t, charge.Events(), 1)
	require.Equal(t, "exception", charge.Events()[0].Name)
	require.Contains(t, charge.Events()[0].Attributes, attribute.String("exception.message", "card declined"))
	require.Equal(t, codes.Error, checkout.Status().Code, "the error passed up through checkout too")
	require.Equal(t, ScopeName, checkout.InstrumentationScope().Name)

	ctx, span := Start(ctx, "manual")
	require.True(t, span.IsRecording())
	require.Equal(t, span.SpanContext(), trace.SpanContextFromContext(ctx))
	span.End()
	spanByName(t, a.rec, "manual")
}

func TestRunPanicEndsSpanAndRepanics(t *testing.T) {
	a := startApp(t, nil)
	require.PanicsWithValue(t, "boom", func() {
		_ = Run(context.Background(), "explodes", func(context.Context) error { panic("boom") })
	})
	s := spanByName(t, a.rec, "explodes")
	require.Equal(t, sdktrace.Status{Code: codes.Error, Description: "panic: boom"}, s.Status())
	require.Len(t, s.Events(), 1)
	attrs := attribute.NewSet(s.Events()[0].Attributes...)
	msg, _ := attrs.Value("exception.message")
	require.Equal(t, "panic: boom", msg.AsString())
	stack, ok := attrs.Value("exception.stacktrace")
	require.True(t, ok)
	require.Contains(t, stack.AsString(), "TestRunPanicEndsSpanAndRepanics")

	// runtime.Goexit (what t.FailNow does) still ends the span.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = Run(context.Background(), "goexit", func(context.Context) error {
			runtime.Goexit()
			return nil
		})
	}()
	wg.Wait()
	require.Equal(t, codes.Error, spanByName(t, a.rec, "goexit").Status().Code)
}

func TestResource(t *testing.T) {
	a := startApp(t, []string{
		"MARTY_SERVICE_NAME=orders", "MARTY_SERVICE_VERSION=1.4.2", "MARTY_ENV=staging",
		"OTEL_TRACES_EXPORTER=none",
		"OTEL_RESOURCE_ATTRIBUTES=team=payments,service.name=ignored,note=a%20b%2Cc",
	})
	require.NoError(t, Run(context.Background(), "op", func(context.Context) error { return nil }))
	res := spanByName(t, a.rec, "op").Resource()
	require.Equal(t, semconv.SchemaURL, res.SchemaURL())
	attrs := res.Set()
	want := map[attribute.Key]string{
		semconv.ServiceNameKey:               "orders", // MARTY_SERVICE_NAME beats the env attribute
		semconv.ServiceVersionKey:            "1.4.2",
		semconv.DeploymentEnvironmentNameKey: "staging",
		"team":                               "payments",
		"note":                               "a b,c",
		semconv.TelemetrySDKLanguageKey:      "go",
	}
	for k, v := range want {
		got, ok := attrs.Value(k)
		require.True(t, ok, "resource has %s", k)
		require.Equal(t, v, got.AsString(), "resource %s", k)
	}
	for _, k := range []attribute.Key{semconv.ServiceInstanceIDKey, semconv.HostNameKey, semconv.OSTypeKey, semconv.ProcessPIDKey, semconv.ProcessRuntimeNameKey} {
		require.True(t, attrs.HasValue(k), "resource has %s", k)
	}
	require.False(t, attrs.HasValue(semconv.ProcessCommandArgsKey), "command-line arguments may hold secrets")
}

func TestResourceServiceNameFromAttributes(t *testing.T) {
	t.Parallel()
	src, err := fxcore.NewSourceFrom("", []string{"OTEL_RESOURCE_ATTRIBUTES=service.name=billing"})
	require.NoError(t, err)
	info := fxcore.ServiceInfo{Name: "fxtracing.test", Version: "v1", Environment: "test", InstanceID: "i-1"}
	res, err := newResource(context.Background(), src, info)
	require.NoError(t, err)
	name, _ := res.Set().Value(semconv.ServiceNameKey)
	require.Equal(t, "billing", name.AsString(), "no name configured: OTEL_RESOURCE_ATTRIBUTES names the service")

	src, err = fxcore.NewSourceFrom("", []string{"OTEL_RESOURCE_ATTRIBUTES=service.name=billing", "OTEL_SERVICE_NAME=orders"})
	require.NoError(t, err)
	info.Name = "orders"
	res, err = newResource(context.Background(), src, info)
	require.NoError(t, err)
	name, _ = res.Set().Value(semconv.ServiceNameKey)
	require.Equal(t, "orders", name.AsString(), "OTEL_SERVICE_NAME wins over OTEL_RESOURCE_ATTRIBUTES")
	_, err = resource.Merge(res, resource.Default())
	require.NoError(t, err, "no schema URL conflict with the SDK's default resource")
}

func TestStopShutsTheProviderDown(t *testing.T) {
	t.Parallel()
	a, err := newApp(t, nil)
	require.NoError(t, err)
	require.NoError(t, a.app.Start(context.Background()))
	a.stop(t)
	_, span := a.tp.Tracer("t").Start(context.Background(), "after-stop")
	require.False(t, span.IsRecording(), "a shut-down provider records nothing")
	span.End()
	require.Empty(t, a.rec.Ended())
}

func TestAsSpanProcessor(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	a := startApp(t, nil, AsSpanProcessor(func(log *zap.Logger) (sdktrace.SpanProcessor, error) {
		require.NotNil(t, log, "the constructor's parameters are injected")
		return rec, nil
	}))
	require.NoError(t, Run(context.Background(), "seen-twice", func(context.Context) error { return nil }))
	spanByName(t, rec, "seen-twice")
	spanByName(t, a.rec, "seen-twice")

	_, err := newApp(t, nil, AsSpanProcessor("not a processor"))
	require.ErrorContains(t, err, "fxtracing.AsSpanProcessor")
	require.ErrorContains(t, err, "got string, want a go.opentelemetry.io/otel/sdk/trace.SpanProcessor")

	_, err = newApp(t, nil, AsSpanProcessor(func() (sdktrace.SpanProcessor, error) { return nil, errors.New("no recorder today") }))
	require.ErrorContains(t, err, "no recorder today")

	_, err = newApp(t, nil, AsSpanProcessor(func() string { return "x" }))
	require.ErrorContains(t, err, "got string")
}

func TestLogFields(t *testing.T) {
	a := startApp(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	base := zap.New(core)

	require.Nil(t, LogFields(context.Background()))
	require.Same(t, base, Logger(context.Background(), base), "no span: the logger as it is")

	var sc trace.SpanContext
	require.NoError(t, Run(context.Background(), "logged", func(ctx context.Context) error {
		sc = trace.SpanContextFromContext(ctx)
		Logger(ctx, base).Info("inside")
		return nil
	}))
	entries := logs.FilterMessage("inside").All()
	require.Len(t, entries, 1)
	fields := entries[0].ContextMap()
	require.Equal(t, sc.TraceID().String(), fields["trace_id"])
	require.Equal(t, sc.SpanID().String(), fields["span_id"])
	require.Equal(t, spanByName(t, a.rec, "logged").SpanContext().TraceID().String(), fields["trace_id"])
}

// TestOverrideProvider: a provider swapped in with fx.Decorate or fx.Replace
// (an in-memory one, in a test) becomes the global one Run uses.
func TestOverrideProvider(t *testing.T) {
	for _, how := range []string{"decorate", "replace"} {
		t.Run(how, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			mem := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
			t.Cleanup(func() { _ = mem.Shutdown(context.Background()) })
			override := fx.Decorate(func(*sdktrace.TracerProvider) *sdktrace.TracerProvider { return mem })
			if how == "replace" {
				override = fx.Replace(fx.Annotate(mem, fx.As(new(trace.TracerProvider))))
			}
			a := startApp(t, nil, override)
			require.Same(t, mem, otel.GetTracerProvider())
			require.NoError(t, Run(context.Background(), "in-memory", noop))
			require.Len(t, exp.GetSpans(), 1)
			require.Equal(t, "in-memory", exp.GetSpans()[0].Name)
			require.Empty(t, a.rec.Ended(), "the module's own provider is not the global one")
		})
	}
}
