package fxhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
)

// Server is the public HTTP server and the admin server. Start listens
// (synchronously) and serves in the background; Stop drains and shuts down.
type Server struct {
	cfg      Config
	log      *zap.Logger
	stopping *fxcore.Stopping
	sd       fx.Shutdowner

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

// NewServer builds both servers and their routes. Conflicting or invalid
// route patterns are an error naming the patterns.
func NewServer(p Params) (*Server, error) {
	if p.Log == nil {
		p.Log = zap.NewNop()
	}
	if err := p.Config.Validate(); err != nil {
		return nil, fmt.Errorf("fxhttp: %w", err)
	}
	cfg := p.Config
	log := p.Log.Named("http")
	stopping := p.Stopping
	if stopping == nil {
		stopping = fxcore.NewStopping(fxcore.WithStopLogger(log))
	}
	s := &Server{cfg: cfg, log: log, stopping: stopping, sd: p.Shutdowner}

	metrics, err := newServerMetrics(p.Registerer)
	if err != nil {
		return nil, err
	}
	tp := p.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := p.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	base := stack{
		tracer:   tp.Tracer(instrumentationName),
		prop:     prop,
		propKeys: propagatorFields(prop),
		metrics:  metrics,
		log:      log,
		logMode:  cfg.AccessLog,
		logRatio: cfg.AccessLogRatio,
		maxBody:  cfg.MaxBodyBytes,
		mappers:  slices.Clone(p.ErrorStatus),
		classify: slices.Clone(p.Classifiers),
	}

	mws := slices.Clone(p.Middleware)
	slices.SortStableFunc(mws, func(a, b Middleware) int { return a.Order - b.Order })
	for _, m := range mws {
		if m.Wrap == nil {
			return nil, fmt.Errorf("fxhttp: middleware %s (order %d) has a nil Wrap", m.Name, m.Order)
		}
	}
	var outer, inner []Middleware // outer: order < 0, around the built-in stack
	for _, m := range mws {
		if m.Order < 0 {
			outer = append(outer, m)
		} else {
			inner = append(inner, m)
		}
	}

	shared := cfg.sharedAdmin()
	var admin []Route
	if cfg.AdminAddr != "" {
		admin, s.withheld = adminRoutes(cfg, p.Info.IsProduction(), p.AdminRoutes)
	}
	if cfg.Addr != "" {
		mux := http.NewServeMux()
		var patterns []string
		for _, rt := range sortedRoutes(p.Routes) {
			h, err := wrap(rt.Handler, inner, rt.Pattern)
			if err != nil {
				return nil, err
			}
			if err := handle(mux, rt.Pattern, h, patterns); err != nil {
				return nil, err
			}
			patterns = append(patterns, rt.Pattern)
		}
		if shared {
			for _, rt := range admin {
				if err := handle(mux, rt.Pattern, rt.Handler, patterns); err != nil {
					return nil, err
				}
				patterns = append(patterns, rt.Pattern)
			}
		}
		st := base.forServer("api", mux, patterns)
		h, err := wrap(st, outer, "")
		if err != nil {
			return nil, err
		}
		s.api = s.newEndpoint("api", cfg.Addr, closeWhenStopping(h, stopping))
	}
	if cfg.AdminAddr != "" && !shared {
		mux := http.NewServeMux()
		var patterns []string
		for _, rt := range admin {
			if err := handle(mux, rt.Pattern, rt.Handler, patterns); err != nil {
				return nil, err
			}
			patterns = append(patterns, rt.Pattern)
		}
		s.admin = s.newEndpoint("admin", cfg.AdminAddr, base.forServer("admin", mux, patterns))
	} else if cfg.AdminAddr == "" {
		s.dropped = len(p.AdminRoutes)
	}
	return s, nil
}

func (b stack) forServer(name string, mux *http.ServeMux, patterns []string) *stack {
	st := b
	st.server = name
	st.next = mux
	st.inflight = b.metrics.inflight.WithLabelValues(name)
	st.routes = make(map[string]*routeInfo, len(patterns))
	for _, p := range patterns {
		st.routes[p] = newRouteInfo(name, p, b.metrics)
	}
	st.unmatched = newRouteInfo(name, "", b.metrics)
	st.unmatched.route = "unmatched"
	return &st
}

func (s *Server) newEndpoint(name, addr string, h http.Handler) *endpoint {
	var protos http.Protocols
	protos.SetHTTP1(true)
	if s.cfg.TLS.Enabled() {
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

var registeredAt = regexp.MustCompile(` \(registered at [^)]*\)`)

// handle registers a route, turning ServeMux's panics (conflicting or
// invalid patterns) into an error that names the patterns.
func handle(mux *http.ServeMux, pattern string, h http.Handler, earlier []string) (err error) {
	defer func() {
		if v := recover(); v != nil {
			msg := registeredAt.ReplaceAllString(fmt.Sprint(v), "")
			msg = strings.ReplaceAll(msg, "\n", "; ")
			err = fmt.Errorf("fxhttp: route %q: %s", pattern, msg)
		}
	}()
	if slices.Contains(earlier, pattern) {
		return fmt.Errorf("fxhttp: route %q is registered twice", pattern)
	}
	mux.Handle(pattern, h)
	return nil
}

// Start listens on the configured addresses, so a port in use is an error
// naming the address, then serves in the background. A server that fails
// after Start stops the app through fx.Shutdowner (exit code 1).
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("fxhttp: server already started")
	}
	var tlsConf *tls.Config
	if s.cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile)
		if err != nil {
			return fmt.Errorf("fxhttp: load TLS certificate %s and key %s (MARTY_HTTP_TLS_CERT_FILE, MARTY_HTTP_TLS_KEY_FILE): %w",
				s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile, err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
		if tlsConf != nil {
			ep.srv.TLSConfig = tlsConf.Clone() // net/http edits it (NextProtos)
		}
		go s.serve(ep)
		s.log.Info("http server listening", zap.String("server", ep.name), zap.String("addr", ep.addr), zap.Bool("tls", tlsConf != nil))
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
		err = fmt.Errorf("fxhttp: serve %s server on %s: %w", ep.name, ep.addr, err)
		if s.sd != nil {
			fxcore.ShutdownOnError(s.sd, s.log, "http "+ep.name+" server", err)
		} else {
			s.log.Error("http server failed", zap.Error(err))
		}
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
