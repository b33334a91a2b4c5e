package fxgrpc

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

// Module provides the gRPC server (*Server, started and stopped with the
// app), the client set (*Clients), the "grpc" Config, the admin route
// GET /grpc/services and, for AsGateway registrations, the REST gateway on
// the public HTTP server. Without an AsService registration the server
// does not listen.
var Module = fx.Module("martyfx.grpc",
	fx.Provide(
		fxcore.ProvideConfig[Config]("grpc", DefaultConfig),
		newServer,
		newClients,
	),
	fx.Provide(fx.Private, newGateway, monitorReadiness, monitorBreakers),
	fxhttp.AsRoutes(gatewayRoutes),
	// Protected: it lists the hosted services and their health.
	fxhttp.AsAdminRoute("GET /grpc/services", newServicesHandler),
	fx.Invoke(run),
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
	Auth           AuthFunc                      `optional:"true"`
	Validator      MessageValidator              `optional:"true"`
	Readiness      Readiness                     `optional:"true"`

	Services           []Service           `group:"martyfx.grpc.services"`
	UnaryInterceptors  []UnaryInterceptor  `group:"martyfx.grpc.unary_interceptors"`
	StreamInterceptors []StreamInterceptor `group:"martyfx.grpc.stream_interceptors"`
	Classifiers        []fxcore.Classifier `group:"martyfx.core.classifiers"`
}

func newServer(p serverParams) (*Server, error) {
	return NewServer(p.Config, ServerOptions{
		Logger:             p.Logger,
		Info:               p.Info,
		Registerer:         p.Registerer,
		TracerProvider:     p.TracerProvider,
		Propagator:         p.Propagator,
		Stopping:           p.Stopping,
		Fatal:              fxcore.FatalFunc(p.Shutdowner, p.Logger, "grpc server"),
		Classifiers:        p.Classifiers,
		Auth:               p.Auth,
		Validator:          p.Validator,
		Readiness:          p.Readiness,
		Services:           p.Services,
		UnaryInterceptors:  p.UnaryInterceptors,
		StreamInterceptors: p.StreamInterceptors,
	})
}

// clientsParams are what Fx injects into NewClients.
type clientsParams struct {
	fx.In

	Config         Config
	Logger         *zap.Logger                   `optional:"true"`
	Registerer     prometheus.Registerer         `optional:"true"`
	TracerProvider trace.TracerProvider          `optional:"true"`
	Propagator     propagation.TextMapPropagator `optional:"true"`
	Breakers       BreakerSource                 `optional:"true"`
}

func newClients(p clientsParams) (*Clients, error) {
	return NewClients(p.Config, ClientsOptions{
		Logger:         p.Logger,
		Registerer:     p.Registerer,
		TracerProvider: p.TracerProvider,
		Propagator:     p.Propagator,
		Breakers:       p.Breakers,
	})
}

// run ties the server, the gateway and the clients to the app's lifecycle:
// clients close after the server has stopped (handlers in flight may still
// use them), and the gateway dials once the server listens.
func run(lc fx.Lifecycle, s *Server, c *Clients, g *gateway) {
	lc.Append(fx.StopHook(c.Close))
	lc.Append(fx.Hook{OnStart: s.Start, OnStop: s.Stop})
	lc.Append(fx.StartHook(g.start))
}

type monitorParams struct {
	fx.In

	Health   *health.Health    `optional:"true"`
	Breakers *breaker.Breakers `optional:"true"`
}

// monitorReadiness drives health from fxmonitor's readiness when
// fxmonitor.Module is in the app.
func monitorReadiness(p monitorParams) Readiness {
	if p.Health == nil {
		return nil
	}
	return p.Health
}

// monitorBreakers hands out fxmonitor's breakers to named clients.
func monitorBreakers(p monitorParams) BreakerSource {
	if p.Breakers == nil {
		return nil
	}
	return breakerSource{p.Breakers}
}

type breakerSource struct{ b *breaker.Breakers }

func (s breakerSource) Breaker(name string) Breaker { return s.b.Get(name) }

// newServicesHandler serves the service registry as JSON.
func newServicesHandler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"addr": s.Addr(), "services": s.hosted()})
	})
}
