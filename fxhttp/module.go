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
		newServer,
	),
	fx.Invoke(func(lc fx.Lifecycle, s *Server) {
		lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	}),
)

// serverParams are what Fx injects into NewServer (ServerOptions documents
// each field).
type serverParams struct {
	fx.In

	Config         Config
	Logger         *zap.Logger
	Info           fxcore.ServiceInfo            `optional:"true"`
	Registerer     prometheus.Registerer         `optional:"true"`
	Stopping       *fxcore.Stopping              `optional:"true"`
	Shutdowner     fx.Shutdowner                 `optional:"true"`
	TracerProvider trace.TracerProvider          `optional:"true"`
	Propagator     propagation.TextMapPropagator `optional:"true"`

	Routes      []Route             `group:"martyfx.http.routes"`
	AdminRoutes []Route             `group:"martyfx.http.admin_routes"`
	Middleware  []Middleware        `group:"martyfx.http.middleware"`
	ErrorStatus []ErrorStatus       `group:"martyfx.http.error_status"`
	Classifiers []fxcore.Classifier `group:"martyfx.core.classifiers"`
}

func newServer(p serverParams) (*Server, error) {
	return NewServer(p.Config, ServerOptions{
		Logger:         p.Logger,
		Info:           p.Info,
		Registerer:     p.Registerer,
		TracerProvider: p.TracerProvider,
		Propagator:     p.Propagator,
		Stopping:       p.Stopping,
		Fatal:          fxcore.FatalFunc(p.Shutdowner, p.Logger, "http server"),
		Classifiers:    p.Classifiers,
		Routes:         p.Routes,
		AdminRoutes:    p.AdminRoutes,
		Middleware:     p.Middleware,
		ErrorStatus:    p.ErrorStatus,
	})
}
