package fxtest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxtracing"

	// SQLite, the harness's default database (in memory).
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

// App is a started martyfx app under test. Its accessors fail the test
// (t.Fatalf) when what they need is missing, saying which module to add.
type App struct {
	t    testing.TB
	fx   *fx.App
	wait time.Duration

	spans  *tracetest.SpanRecorder
	logs   *observer.ObservedLogs
	events *eventRecorder
	g      graph

	mu   sync.Mutex
	conn *grpc.ClientConn
	http *HTTPClient
}

// graph is what the harness takes from the app; every part is optional so
// that WithModules may leave modules out.
type graph struct {
	fx.In

	HTTP       *fxhttp.Server                `optional:"true"`
	GRPC       *fxgrpc.Server                `optional:"true"`
	DB         *gorm.DB                      `optional:"true"`
	Gatherer   prometheus.Gatherer           `optional:"true"`
	Dispatcher *fxevents.Dispatcher          `optional:"true"`
	Codec      fxevents.Codec                `optional:"true"`
	Tracer     trace.TracerProvider          `optional:"true"`
	Propagator propagation.TextMapPropagator `optional:"true"`
	Info       fxcore.ServiceInfo            `optional:"true"`
	Stopping   *fxcore.Stopping              `optional:"true"`
}

// New builds the app from DefaultModules (or WithModules) and opts with the
// test defaults (see the package doc), starts it, and stops it when the test
// ends. A build or start failure fails the test with Fx's error and the logs;
// a stop failure fails the test too.
//
// opts are Fx options (fx.Provide, fx.Invoke, the modules' AsXxx helpers,
// Replace, Decorate, Config, fx.Populate ...) and the harness options Env,
// WithModules, Postgres, Async and WaitTimeout, which must be passed to New
// directly (not inside fx.Options).
func New(t testing.TB, opts ...fx.Option) *App {
	t.Helper()
	s, rest := splitOptions(opts)
	env := append(append([]string{}, defaultEnv...), s.env...)
	src, err := fxcore.NewSourceFrom("", env)
	if err != nil {
		t.Fatalf("fxtest: config source: %v", err)
		return nil
	}
	// The defaults are for DefaultModules: an app built WithModules may not
	// read them all, and must not be warned about them. Looking them up
	// marks them read; the test's own Env values are still checked.
	for _, kv := range defaultEnv {
		name, _, _ := strings.Cut(kv, "=")
		src.Env(name)
	}
	core, err := fxcore.Load(src, "", fxcore.DefaultConfig())
	if err != nil {
		t.Fatalf("fxtest: %v", err)
		return nil
	}
	obsCore, logs := observer.New(zapcore.DebugLevel)
	a := &App{
		t: t, wait: s.wait,
		spans:  tracetest.NewSpanRecorder(),
		logs:   logs,
		events: &eventRecorder{},
	}
	// Cleanups run last-registered first: the logs are printed after the
	// stop, the clients close before it.
	t.Cleanup(a.printLogsIfFailed)

	modules := DefaultModules
	if s.modulesSet {
		modules = s.modules
	}
	log := zap.New(obsCore, zap.AddCaller())
	// New reports failures itself, once, root cause first; the Fx logger
	// needs nothing from the graph, so it works whatever the graph's fault.
	fxLogger := fx.WithLogger(func() fxevent.Logger { return fxcore.NewFxDebugLogger(log) })
	inner := make([]fx.Option, 0, len(modules)+len(rest)+2)
	inner = append(inner, modules...)
	// After the modules, whose fx.WithLogger (martyfx.Modules has one) it
	// replaces in this module; before the test's options, which may set their own.
	inner = append(inner, fxLogger)
	inner = append(inner, rest...)
	inner = append(inner, fx.Invoke(func(g graph) { a.g = g }))

	a.fx = fx.New(
		fxLogger,
		fx.StartTimeout(core.StartTimeout),
		fx.StopTimeout(core.StopTimeout),
		fx.Replace(src),
		fx.Decorate(func() *zap.Logger { return log }),
		fx.Decorate(a.events.decorate),
		fxtracing.AsSpanProcessor(func() sdktrace.SpanProcessor { return a.spans }),
		// The app's own options (and the test's Decorate/Replace/Config)
		// live one scope down, so they stack on the harness's decorations.
		fx.Module("fxtest.app", inner...),
	)
	if err := a.fx.Err(); err != nil {
		t.Fatalf("fxtest: build the app: %s", fxcore.DescribeError(err))
		return a
	}
	ctx, cancel := context.WithTimeout(context.Background(), core.StartTimeout)
	defer cancel()
	// As with martyfx.Run, readiness waits for every start hook.
	started := func() {}
	if a.g.Stopping != nil {
		started = a.g.Stopping.ExpectStart()
	}
	if err := a.fx.Start(ctx); err != nil {
		sctx, scancel := context.WithTimeout(context.Background(), core.StopTimeout)
		defer scancel()
		_ = a.fx.Stop(sctx)
		t.Fatalf("fxtest: start the app: %s", fxcore.DescribeError(err))
		return a
	}
	started()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), core.StopTimeout)
		defer cancel()
		if err := a.stop(ctx); err != nil {
			t.Errorf("fxtest: stop the app: %s", fxcore.DescribeError(err))
		}
	})
	t.Cleanup(a.closeClients)
	return a
}

// printLogsIfFailed prints the app's logs through t.Log when the test failed.
func (a *App) printLogsIfFailed() {
	if !a.t.Failed() {
		return
	}
	entries := a.logs.AllUntimed()
	a.t.Logf("fxtest: the app's logs (without Fx's debug events):\n%s", formatLogs(entries))
}

func (a *App) closeClients() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn != nil {
		_ = a.conn.Close()
		a.conn = nil
	}
	if a.http != nil {
		a.http.Client.CloseIdleConnections()
	}
}

// Stop stops the app now (it is otherwise stopped when the test ends) and
// returns Fx's error; the clients of GRPC and HTTP are closed first. Like
// martyfx.Run it runs the servers' stop sequence (fxcore.Stopping) before
// the other modules' stop hooks.
func (a *App) Stop(ctx context.Context) error {
	a.closeClients()
	return a.stop(ctx)
}

// stop runs the servers' stop sequence, then Fx's stop hooks, which return
// the sequence's errors as the servers' own.
func (a *App) stop(ctx context.Context) error {
	if a.g.Stopping != nil {
		_ = a.g.Stopping.Stop(ctx)
	}
	return a.fx.Stop(ctx)
}

// FX returns the underlying *fx.App.
func (a *App) FX() *fx.App { return a.fx }

// GRPC returns a client connection to the app's gRPC server, created on
// first use and closed when the test ends. It is instrumented like
// fxgrpc.NewClient (client spans, trace propagation to the server).
func (a *App) GRPC() *grpc.ClientConn {
	a.t.Helper()
	if a.g.GRPC == nil || a.g.GRPC.Addr() == "" {
		a.t.Fatalf("fxtest: GRPC(): the app has no gRPC server listening: add fxgrpc.Module and a service (fxgrpc.AsService), and keep MARTY_GRPC_ADDR set")
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		var opts []fxgrpc.ClientOption
		if a.g.Tracer != nil {
			opts = append(opts, fxgrpc.WithTracerProvider(a.g.Tracer))
		}
		if a.g.Propagator != nil {
			opts = append(opts, fxgrpc.WithPropagator(a.g.Propagator))
		}
		conn, err := fxgrpc.NewClient(a.g.GRPC.Addr(), opts...)
		if err != nil {
			a.t.Fatalf("fxtest: GRPC(): dial %s: %v", a.g.GRPC.Addr(), err)
			return nil
		}
		a.conn = conn
	}
	return a.conn
}

// GRPCAddr returns the gRPC server's bound address (host:port).
func (a *App) GRPCAddr() string {
	a.t.Helper()
	if a.g.GRPC == nil {
		a.t.Fatalf("fxtest: GRPCAddr(): the app has no gRPC server: add fxgrpc.Module")
		return ""
	}
	return a.g.GRPC.Addr()
}

// HTTP returns a small JSON client of the public HTTP server.
func (a *App) HTTP() *HTTPClient {
	a.t.Helper()
	if a.g.HTTP == nil || a.g.HTTP.Addr() == "" {
		a.t.Fatalf("fxtest: HTTP(): the app has no public HTTP server: add fxhttp.Module (and keep MARTY_HTTP_ADDR set)")
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.http == nil {
		opts := []fxhttp.ClientOption{fxhttp.WithTimeout(30 * time.Second)}
		if a.g.Tracer != nil {
			opts = append(opts, fxhttp.WithTracerProvider(a.g.Tracer))
		}
		if a.g.Propagator != nil {
			opts = append(opts, fxhttp.WithPropagator(a.g.Propagator))
		}
		a.http = &HTTPClient{BaseURL: "http://" + a.g.HTTP.Addr(), Client: fxhttp.NewClient(opts...), t: a.t}
	}
	return a.http
}

// AdminURL returns the admin server's base URL ("http://127.0.0.1:port"),
// where /livez, /readyz, /metrics and the admin routes are served.
func (a *App) AdminURL() string {
	a.t.Helper()
	if a.g.HTTP == nil || a.g.HTTP.AdminAddr() == "" {
		a.t.Fatalf("fxtest: AdminURL(): the app has no admin HTTP server: add fxhttp.Module (and keep MARTY_HTTP_ADMIN_ADDR set)")
		return ""
	}
	return "http://" + a.g.HTTP.AdminAddr()
}

// Admin returns a JSON client of the admin server.
func (a *App) Admin() *HTTPClient {
	a.t.Helper()
	base := a.AdminURL()
	if base == "" {
		return nil
	}
	h := a.HTTP()
	if h == nil {
		return nil
	}
	return &HTTPClient{BaseURL: base, Client: h.Client, t: a.t}
}

// DB returns the app's *gorm.DB.
func (a *App) DB() *gorm.DB {
	a.t.Helper()
	if a.g.DB == nil {
		a.t.Fatalf("fxtest: DB(): the app has no *gorm.DB: add fxrepo.Module")
	}
	return a.g.DB
}

// Logs returns the app's log entries recorded so far (every level).
func (a *App) Logs() *observer.ObservedLogs { return a.logs }

// ServiceInfo returns the app's service identity.
func (a *App) ServiceInfo() fxcore.ServiceInfo { return a.g.Info }

// eventually calls ok until it returns true or the wait timeout passes.
func (a *App) eventually(ok func() bool) bool {
	deadline := time.Now().Add(a.wait)
	for {
		if ok() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (a *App) fatalf(format string, args ...any) {
	a.t.Helper()
	a.t.Fatalf(format, args...)
}
