package fxgrpc

import (
	"encoding/json"
	"net/http"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
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
	fx.Provide(fx.Private, newGateway),
	fx.Provide(fx.Annotate(gatewayRoutes, fx.ResultTags(`group:"martyfx.http.routes,flatten"`))),
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

// newServicesHandler serves the service registry as JSON.
func newServicesHandler(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"addr": s.Addr(), "services": s.Services()})
	})
}
