package fxhttp

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
)

// Module provides the "http" Config and *Server, and runs the server in the
// app's lifecycle. It needs fxcore.Module; fxtracing.Module is optional (the
// global OpenTelemetry provider and propagator are used without it).
var Module = fx.Module("martyfx.http",
	fx.Provide(
		fxcore.ProvideConfig[Config]("http", DefaultConfig),
		NewServer,
	),
	fx.Invoke(func(lc fx.Lifecycle, s *Server) {
		lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	}),
)

// Params are NewServer's dependencies. Fx fills them in; without Fx, fill
// the fields by hand (only Config and Log are required; fill Info
// in production).
type Params struct {
	fx.In

	Config Config
	Log    *zap.Logger
	// Info is the service's identity; in production (Info.IsProduction)
	// without Config.AdminToken the protected admin routes are not served.
	// The zero value is not production.
	Info fxcore.ServiceInfo
	// Registerer receives the RED metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer `optional:"true"`
	// Stopping is the app's stop sequence: the server adds its stages (the
	// public server before the gRPC server, the admin server last) when it
	// listens. Nil: a sequence of this server alone.
	Stopping *fxcore.Stopping `optional:"true"`
	// Shutdowner stops the app when a server dies after start.
	Shutdowner fx.Shutdowner `optional:"true"`
	// TracerProvider defaults to otel.GetTracerProvider().
	TracerProvider trace.TracerProvider `optional:"true"`
	// Propagator defaults to otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator `optional:"true"`

	// Routes are the public server's routes (AsRoute).
	Routes []Route `group:"martyfx.http.routes"`
	// AdminRoutes are the admin server's routes (AsAdminRoute).
	AdminRoutes []Route `group:"martyfx.http.admin_routes"`
	// Middleware is the user middleware of the public server (AsMiddleware).
	Middleware []Middleware `group:"martyfx.http.middleware"`
	// ErrorStatus maps errors to statuses for WriteError (AsErrorStatus).
	ErrorStatus []ErrorStatus `group:"martyfx.http.error_status"`
	// Classifiers classify errors for WriteError (fxcore.AsClassifier).
	Classifiers []fxcore.Classifier `group:"martyfx.core.classifiers"`
}
