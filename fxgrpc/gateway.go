package fxgrpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/fx"
	"google.golang.org/grpc/metadata"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// gateway is the grpc-gateway mux of every AsGateway registration. It is
// mounted on fxhttp's public server at build time but dials the local gRPC
// server only once that listens (the bound address is known then), so the
// calls it makes go through the full interceptor chain. Until then it
// answers 503.
type gateway struct {
	s     *Server
	regs  []GatewayRegister
	mux   *runtime.ServeMux
	ready atomic.Bool
	// started tells the app's start gate (readiness) the REST routes work.
	started func()
}

type gatewayParams struct {
	fx.In

	Server *Server
	Regs   []GatewayRegister `group:"martyfx.grpc.gateways"`
}

func newGateway(p gatewayParams) *gateway {
	g := &gateway{s: p.Server, regs: p.Regs, mux: runtime.NewServeMux(gatewayMuxOptions(p.Server)...)}
	if len(g.regs) > 0 {
		g.started = p.Server.stopping.ExpectStart()
	}
	return g
}

// start dials the local server and registers the REST handlers.
func (g *gateway) start(ctx context.Context) error {
	if len(g.regs) == 0 {
		return nil
	}
	if g.s.Addr() == "" {
		return errors.New("fxgrpc: the REST gateway (AsGateway) calls the gRPC server, which hosts no service: " +
			"register one with fxgrpc.AsService")
	}
	opts := []ClientOption{WithMaxAttempts(1), WithTimeout(0),
		WithTracerProvider(g.s.tp), WithPropagator(g.s.prop)}
	if g.s.tlsOn() {
		// The peer is this very process: its certificate is not verified,
		// and offered back for mutual TLS.
		opts = append(opts, WithTLS(fxcore.TLS{
			CertFile: g.s.cfg.TLS.CertFile, KeyFile: g.s.cfg.TLS.KeyFile, InsecureSkipVerify: true,
		}))
	}
	conn, err := NewClient(g.s.dialAddr(), opts...)
	if err != nil {
		return fmt.Errorf("fxgrpc: gateway: %w", err)
	}
	// Closed once the gRPC server has stopped, which the stop sequence
	// does only after the public HTTP server (serving the gateway) drained.
	g.s.afterStop = append(g.s.afterStop, func() { _ = conn.Close() })
	for _, reg := range g.regs {
		if err := reg(context.WithoutCancel(ctx), g.mux, conn); err != nil {
			return fmt.Errorf("fxgrpc: gateway: register handlers: %w", err)
		}
	}
	g.ready.Store(true)
	g.started()
	return nil
}

// ServeHTTP serves the REST calls; gRPC errors become their HTTP status
// with the google.rpc.Status as the JSON body (grpc-gateway's default).
func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !g.ready.Load() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "fxgrpc: gateway not started", http.StatusServiceUnavailable)
		return
	}
	g.mux.ServeHTTP(w, r)
}

// gatewayRoutes mounts the gateway on the public HTTP server when at least
// one AsGateway is registered (through fxhttp.AsRoutes, so that no gateway
// means no route).
func gatewayRoutes(g *gateway, cfg Config) []fxhttp.Route {
	if len(g.regs) == 0 {
		return nil
	}
	return []fxhttp.Route{{Pattern: cfg.GatewayPattern, Handler: g}}
}

// routeLabel names the gateway's matched HTTP pattern as the request's
// route (fxhttp.SetRoute), so its metrics, span and access log line say
// "/v1/orders/{id}" rather than the mount point. It runs as a metadata
// annotator: grpc-gateway calls those from AnnotateContext, whose context
// carries the pattern of the handler (runtime.HTTPPathPattern).
func routeLabel(ctx context.Context, _ *http.Request) metadata.MD {
	if pattern, ok := runtime.HTTPPathPattern(ctx); ok {
		fxhttp.SetRoute(ctx, pattern)
	}
	return nil
}
