package fxhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
)

// ServerOptions are NewServer's dependencies besides the Config. Every
// field is optional; fxhttp.Module fills them from the app's graph.
type ServerOptions struct {
	// Logger receives the server's logs and access log; nil: zap.NewNop().
	Logger *zap.Logger
	// Info is the service's identity; in production (Info.IsProduction)
	// without Config.AdminToken the protected admin routes are not served.
	// The zero value is not production.
	Info fxcore.ServiceInfo
	// Registerer receives the RED metrics; nil: they are not registered.
	Registerer prometheus.Registerer
	// TracerProvider makes the server spans; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator extracts the caller's trace context; nil:
	// otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
	// Stopping is the app's stop sequence: the server adds its stages (the
	// public server before the gRPC server, the admin server last) when it
	// listens. Nil: a private sequence of this server alone.
	Stopping *fxcore.Stopping
	// Fatal is called when a server dies after Start (Module stops the app
	// with exit code 1); nil: the error is only logged.
	Fatal func(error)
	// Classifiers classify errors for WriteError (fxcore.AsClassifier).
	Classifiers []fxcore.Classifier

	// Routes are the public server's routes (AsRoute, AsRoutes).
	Routes []Route
	// AdminRoutes are the admin server's routes (AsAdminRoute).
	AdminRoutes []Route
	// Middleware wraps the public server's routes (AsMiddleware), in the
	// order the package doc describes.
	Middleware []Middleware
	// ErrorStatus maps errors to statuses for WriteError (AsErrorStatus).
	ErrorStatus []ErrorStatus
}

// Server is the public HTTP server and the admin server. Start listens
// (synchronously) and serves in the background; Stop drains and shuts down.
type Server struct {
	cfg      Config
	log      *zap.Logger
	stopping *fxcore.Stopping
	// listening tells the app's start gate (readiness) the public server listens.
	listening func()
	fatal     func(error)
	tls       *tls.Config // nil: plain HTTP

	api, admin *endpoint // nil when disabled (admin also when shared)
	dropped    int       // admin routes not served: the admin server is disabled
	withheld   []string  // protected admin routes not served: production without a token

	mu      sync.Mutex
	started bool
	stages  []*fxcore.Stage // the api then the admin stage, once listening
}

// endpoint is one listening http.Server.
type endpoint struct {
	name   string // "api" or "admin"
	addr   string // configured, then bound
	srv    *http.Server
	ln     net.Listener
	served chan struct{} // closed when Serve has returned
}

// NewServer validates cfg and builds both servers and their routes; Start
// listens. Conflicting, duplicate or invalid route patterns are an error
// naming the patterns, and so is a TLS file that does not load.
func NewServer(cfg Config, opts ServerOptions) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxhttp: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("http")
	stopping := opts.Stopping
	if stopping == nil {
		stopping = fxcore.NewStopping(fxcore.WithStopLogger(log))
	}
	fatal := opts.Fatal
	if fatal == nil {
		fatal = func(err error) { log.Error("http server failed", zap.Error(err)) }
	}
	tlsConf, err := cfg.TLS.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("fxhttp: TLS (MARTY_HTTP_TLS_CERT_FILE, MARTY_HTTP_TLS_KEY_FILE, MARTY_HTTP_TLS_CA_FILE): %w", err)
	}
	s := &Server{cfg: cfg, log: log, stopping: stopping, fatal: fatal, tls: tlsConf}
	base, err := newStack(cfg, opts, log)
	if err != nil {
		return nil, err
	}
	outer, inner, err := splitMiddleware(opts.Middleware)
	if err != nil {
		return nil, err
	}

	shared := cfg.sharedAdmin()
	var admin []Route
	if cfg.AdminAddr != "" {
		admin, s.withheld = adminRoutes(cfg, opts.Info.IsProduction(), opts.AdminRoutes)
	} else {
		s.dropped = len(opts.AdminRoutes)
	}
	if cfg.Addr != "" {
		routes := sortedRoutes(opts.Routes)
		for i, rt := range routes {
			if routes[i].Handler, err = wrap(rt.Handler, inner, rt.Pattern); err != nil {
				return nil, err
			}
		}
		if shared {
			routes = append(routes, admin...)
		}
		mux, patterns, err := newMux(routes)
		if err != nil {
			return nil, err
		}
		next, err := wrap(mux, outer, "")
		if err != nil {
			return nil, err
		}
		s.api = s.newEndpoint("api", cfg.Addr, closeWhenStopping(base.forServer("api", next, patterns), stopping))
		// Readiness waits until the public server listens (Stopping.Started).
		s.listening = stopping.ExpectStart()
	}
	if cfg.AdminAddr != "" && !shared {
		mux, patterns, err := newMux(admin)
		if err != nil {
			return nil, err
		}
		s.admin = s.newEndpoint("admin", cfg.AdminAddr, base.forServer("admin", mux, patterns))
	}
	return s, nil
}

// splitMiddleware sorts the middleware by Order and splits it: outer
// (Order < 0) wraps the ServeMux, inner (Order >= 0) each route's handler.
func splitMiddleware(mws []Middleware) (outer, inner []Middleware, err error) {
	mws = slices.Clone(mws)
	slices.SortStableFunc(mws, func(a, b Middleware) int { return a.Order - b.Order })
	for _, m := range mws {
		switch {
		case m.Wrap == nil:
			return nil, nil, fmt.Errorf("fxhttp: middleware %s (order %d) has a nil Wrap", m.Name, m.Order)
		case m.Order < 0:
			outer = append(outer, m)
		default:
			inner = append(inner, m)
		}
	}
	return outer, inner, nil
}

func (s *Server) newEndpoint(name, addr string, h http.Handler) *endpoint {
	var protos http.Protocols
	protos.SetHTTP1(true)
	if s.tls != nil {
		protos.SetHTTP2(true)
	}
	if s.cfg.H2C {
		protos.SetUnencryptedHTTP2(true)
	}
	errLog, _ := zap.NewStdLogAt(s.log.With(zap.String("server", name)), zap.WarnLevel)
	return &endpoint{name: name, addr: addr, served: make(chan struct{}), srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		Protocols:         &protos,
		ErrorLog:          errLog,
	}}
}

// closeWhenStopping answers "Connection: close" once shutdown has begun,
// so that during the drain delay clients take each next request to a new
// connection (through the load balancer, which by then routes elsewhere)
// instead of reusing this one; HTTP/2 connections get a GOAWAY. Unlike
// http.Server.SetKeepAlivesEnabled(false) it does not close the idle
// connections at once, which would race with requests being sent on them.
func closeWhenStopping(h http.Handler, stopping *fxcore.Stopping) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if stopping.Begun() {
			w.Header().Set("Connection", "close")
		}
		h.ServeHTTP(w, r)
	})
}

func sortedRoutes(rs []Route) []Route {
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b Route) int { return strings.Compare(a.Pattern, b.Pattern) })
	return rs
}

func wrap(h http.Handler, mws []Middleware, pattern string) (http.Handler, error) {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i].Wrap(h)
		if h == nil {
			if pattern != "" {
				return nil, fmt.Errorf("fxhttp: middleware %s (order %d) returned a nil handler for route %q", mws[i].Name, mws[i].Order, pattern)
			}
			return nil, fmt.Errorf("fxhttp: middleware %s (order %d) returned a nil handler", mws[i].Name, mws[i].Order)
		}
	}
	return h, nil
}

// Start listens on the configured addresses, so a port in use is an error
// naming the address, then serves in the background. A server that fails
// after Start calls ServerOptions.Fatal.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("fxhttp: server already started")
	}
	var lc net.ListenConfig
	var opened []*endpoint
	for _, ep := range []*endpoint{s.api, s.admin} {
		if ep == nil {
			continue
		}
		ln, err := lc.Listen(ctx, "tcp", ep.addr)
		if err != nil {
			for _, o := range opened {
				_ = o.ln.Close()
			}
			return fmt.Errorf("fxhttp: listen on %s for the %s server: %w", ep.addr, ep.name, err)
		}
		ep.ln = ln
		ep.addr = ln.Addr().String()
		opened = append(opened, ep)
	}
	for _, ep := range opened {
		if s.tls != nil {
			ep.srv.TLSConfig = s.tls.Clone() // net/http edits it (NextProtos)
		}
		go s.serve(ep)
		s.log.Info("http server listening", zap.String("server", ep.name), zap.String("addr", ep.addr), zap.Bool("tls", s.tls != nil))
	}
	// The api server drains first (its gateway calls the gRPC server, which
	// stops after it), the admin server stops last: probes and /metrics
	// answer throughout the stop.
	if s.api != nil {
		s.stages = append(s.stages, s.stopping.AddStage(fxcore.StopStage{
			Name: "http api", Order: fxcore.StopFront, DrainDelay: s.cfg.DrainDelay, Stop: s.api.shutdown,
		}))
	}
	if s.admin != nil {
		s.stages = append(s.stages, s.stopping.AddStage(fxcore.StopStage{
			Name: "http admin", Order: fxcore.StopAdmin, Stop: s.admin.shutdown,
		}))
	}
	if s.dropped > 0 {
		s.log.Warn("admin server disabled (MARTY_HTTP_ADMIN_ADDR is empty): admin routes are not served", zap.Int("routes", s.dropped))
	}
	if len(s.withheld) > 0 {
		s.log.Warn("admin routes that show payloads or change state are not served: "+
			"MARTY_ENV is production and MARTY_HTTP_ADMIN_TOKEN is not set; set it (e.g. from a Kubernetes Secret) "+
			"to serve them to callers that send Authorization: Bearer <token>; probes and /metrics stay open",
			zap.Strings("routes", s.withheld))
	}
	s.started = true
	if s.listening != nil {
		s.listening()
	}
	return nil
}

func (s *Server) serve(ep *endpoint) {
	defer close(ep.served)
	var err error
	if ep.srv.TLSConfig != nil {
		err = ep.srv.ServeTLS(ep.ln, "", "")
	} else {
		err = ep.srv.Serve(ep.ln)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.fatal(fmt.Errorf("fxhttp: serve %s server on %s: %w", ep.name, ep.addr, err))
	}
}

// Stop runs the app's stop sequence (fxcore.Stopping) unless another
// server's stop has begun it, and returns this server's part of it:
// readiness fails everywhere at once, the largest drain delay configured
// across servers is waited once, then the public server shuts down
// gracefully (its listener closes, requests in flight complete) while the
// gRPC server still serves its gateway, and the admin server last. When ctx
// ends first the remaining connections are closed and the error says so.
// Stop is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	stages := s.stages
	s.mu.Unlock()
	if len(stages) == 0 {
		s.stopping.Begin()
		return nil
	}
	var errs []error
	for _, g := range stages {
		errs = append(errs, g.Stop(ctx))
	}
	return errors.Join(errs...)
}

// shutdown is the endpoint's stop stage: a graceful shutdown within ctx,
// then a hard close.
func (ep *endpoint) shutdown(ctx context.Context) error {
	var err error
	if e := ep.srv.Shutdown(ctx); e != nil {
		_ = ep.srv.Close()
		err = fmt.Errorf("fxhttp: graceful shutdown of the %s server on %s: %w (open connections closed)", ep.name, ep.addr, e)
	}
	<-ep.served
	return err
}

// Addr returns the public server's address: the bound one once started
// (":0" resolves to the real port), "" when the server is disabled.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.api == nil {
		return ""
	}
	return s.api.addr
}

// Handler returns the public server's handler, built-in stack and routes
// included (for in-process tests and benchmarks); nil when disabled.
func (s *Server) Handler() http.Handler {
	if s.api == nil {
		return nil
	}
	return s.api.srv.Handler
}

// AdminAddr returns the admin server's address like Addr; when the admin
// routes share the public server it is Addr().
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.admin != nil:
		return s.admin.addr
	case s.cfg.sharedAdmin() && s.api != nil:
		return s.api.addr
	}
	return ""
}
