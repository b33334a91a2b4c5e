package fxtracing

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testApp is an app of fxcore.Module and Module on an injected environment,
// its logs observed and its spans recorded in memory.
type testApp struct {
	app  *fx.App
	tp   *sdktrace.TracerProvider
	prop propagation.TextMapPropagator
	rec  *tracetest.SpanRecorder
	logs *observer.ObservedLogs
}

func newApp(t *testing.T, env []string, opts ...fx.Option) (*testApp, error) {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", env)
	require.NoError(t, err)
	core, logs := observer.New(zapcore.DebugLevel)
	a := &testApp{rec: tracetest.NewSpanRecorder(), logs: logs}
	all := append([]fx.Option{
		fxcore.Module, Module, fx.NopLogger,
		fx.Replace(src),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		AsSpanProcessor(a.rec),
		fx.Populate(&a.tp, &a.prop),
	}, opts...)
	a.app = fx.New(all...)
	return a, a.app.Err()
}

// startApp builds and starts the app and stops it at cleanup.
func startApp(t *testing.T, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	a, err := newApp(t, env, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, a.app.Start(ctx))
	t.Cleanup(func() { a.stop(t) })
	return a
}

func (a *testApp) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, a.app.Stop(ctx))
}

// startLog returns the fields of the "tracing started" log entry.
func (a *testApp) startLog(t *testing.T) map[string]any {
	t.Helper()
	entries := a.logs.FilterMessage("tracing started").All()
	require.Len(t, entries, 1)
	return entries[0].ContextMap()
}
