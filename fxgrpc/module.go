package fxgrpc

import (
	"encoding/json"
	"net/http"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

// Module provides the gRPC server (*Server, started and stopped with the
// app), the client set (*Clients), the "grpc" Config, the admin route
// GET /grpc/services and, for AsGateway registrations, the REST gateway on
// the public HTTP server.
var Module = fx.Module("martyfx.grpc",
	fx.Provide(
		fxcore.ProvideConfig[Config]("grpc", DefaultConfig),
		NewServer,
		NewClients,
	),
	fx.Provide(fx.Private, newGateway, monitorReadiness, monitorBreakers),
	fx.Provide(fx.Annotate(gatewayRoutes, fx.ResultTags(`group:"martyfx.http.routes,flatten"`))),
	// Protected: it lists the hosted services and their health.
	fxhttp.AsAdminRoute("GET /grpc/services", newServicesHandler),
	fx.Invoke(run),
)

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
		_ = json.NewEncoder(w).Encode(map[string]any{"addr": s.Addr(), "services": s.Services()})
	})
}
