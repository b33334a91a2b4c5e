package fxgrpc

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/fx"

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
}

type gatewayParams struct {
	fx.In

	Server *Server
	Regs   []GatewayRegister `group:"martyfx.grpc.gateways"`
}

func newGateway(p gatewayParams) *gateway {
	return &gateway{s: p.Server, regs: p.Regs, mux: runtime.NewServeMux(gatewayMuxOptions(p.Server)...)}
}

// start dials the local server and registers the REST handlers.
func (g *gateway) start(ctx context.Context) error {
	if len(g.regs) == 0 {
		return nil
	}
	opts := []ClientOption{WithMaxAttempts(1), WithTimeout(0),
		WithTracerProvider(g.s.tp), WithPropagators(g.s.prop)}
	if g.s.TLS() {
		// The peer is this very process; the server's own certificate is
		// offered for mTLS.
		opts = append(opts, WithTLS(&tls.Config{
			InsecureSkipVerify: true, //nolint:gosec // loopback to ourselves
			Certificates:       g.s.tlsCerts,
			MinVersion:         tls.VersionTLS12,
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
// one AsGateway is registered (fxhttp's route group, flattened so that no
// gateway means no route).
func gatewayRoutes(g *gateway, cfg Config) []fxhttp.Route {
	if len(g.regs) == 0 {
		return nil
	}
	return []fxhttp.Route{{Pattern: cfg.GatewayPattern, Handler: g}}
}
