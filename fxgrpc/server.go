package fxgrpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/martyfx/martyfx/fxcore"
)

// ServerOptions are NewServer's dependencies besides the Config. Every
// field is optional; fxgrpc.Module fills them from the app's graph.
type ServerOptions struct {
	// Logger receives the server's logs and call logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Info is the service's identity: reflection in "auto" mode is on
	// outside production. The zero value is not production.
	Info fxcore.ServiceInfo
	// Registerer receives the grpc_server_* metrics; nil: they are not
	// registered (and not collected).
	Registerer prometheus.Registerer
	// TracerProvider makes the server spans; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator extracts the caller's trace context; nil:
	// otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
	// Stopping is the app's stop sequence: the server adds its stage (after
	// the public HTTP server, before the admin server) when it listens.
	// Nil: a private sequence of this server alone.
	Stopping *fxcore.Stopping
	// Fatal is called when the server dies after Start (Module stops the
	// app with exit code 1); nil: the error is only logged.
	Fatal func(error)
	// Classifiers classify handler errors (fxcore.AsClassifier; fxrepo
	// registers its database classifier this way).
	Classifiers []fxcore.Classifier
	// Auth authenticates every call but health and reflection; nil: none.
	Auth AuthFunc
	// Validator checks request messages that have no Validate method of
	// their own (fxgrpc/bufvalidate: buf.validate rules); nil: only the
	// messages' own Validate / ValidateAll methods run.
	Validator MessageValidator
	// Readiness drives the health service; nil: SERVING from Start to the
	// stop (Module uses fxmonitor's readiness when fxmonitor.Module is in
	// the app).
	Readiness Readiness

	// Services are the hosted services (AsService). With none (and none
	// registered on GRPC() before Start), Start opens no listener.
	Services []Service
	// UnaryInterceptors and StreamInterceptors are the user interceptors
	// (AsUnaryInterceptor, AsStreamInterceptor), placed by their Order as
	// the package doc describes.
	UnaryInterceptors  []UnaryInterceptor
	StreamInterceptors []StreamInterceptor
}

// Server is the app's gRPC server with health, reflection and the
// built-in interceptor chain; it is also the registry of hosted services.
type Server struct {
	cfg        Config
	log        *zap.Logger
	srv        *grpc.Server
	health     *healthServer
	services   []Service
	reflection bool
	stopping   *fxcore.Stopping
	fatal      func(error)
	readiness  Readiness
	metrics    *serverMetrics
	srvOpts    []grpc.ServerOption // to build the serving grpc.Server (withWorkers)
	registered int                 // services NewServer registered
	tp         trace.TracerProvider
	prop       propagation.TextMapPropagator

	mu        sync.Mutex
	lis       net.Listener
	started   bool
	stopped   bool
	serveDone chan struct{}
	stage     *fxcore.Stage // once listening
	listening func()        // tells the app's start gate (readiness) this server listens
	afterStop []func()
}

// NewServer validates cfg and builds the server: the interceptor chain,
// the services, health, reflection and metrics. Start listens.
func NewServer(cfg Config, opts ServerOptions) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxgrpc: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("grpc")
	s := &Server{
		cfg: cfg, log: log, services: opts.Services, stopping: opts.Stopping, fatal: opts.Fatal,
		readiness: opts.Readiness, serveDone: make(chan struct{}), tp: opts.TracerProvider, prop: opts.Propagator,
	}
	if s.stopping == nil {
		s.stopping = fxcore.NewStopping(fxcore.WithStopLogger(log))
	}
	if s.fatal == nil {
		s.fatal = func(err error) { log.Error("grpc server failed", zap.Error(err)) }
	}
	if s.tp == nil {
		s.tp = otel.GetTracerProvider()
	}
	if s.prop == nil {
		s.prop = otel.GetTextMapPropagator()
	}
	s.reflection = cfg.Reflection == "on" || (cfg.Reflection == "auto" && !opts.Info.IsProduction())
	if opts.Registerer != nil {
		s.metrics = newServerMetrics()
		if err := opts.Registerer.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("fxgrpc: register server metrics: %w", err)
		}
	}
	srvOpts, err := s.serverOptions(opts)
	if err != nil {
		return nil, err
	}
	s.srvOpts = srvOpts
	s.srv = grpc.NewServer(srvOpts...)

	seen := map[string]bool{}
	for _, svc := range opts.Services {
		if err := checkImpl(svc.Desc, svc.Impl); err != nil {
			return nil, fmt.Errorf("fxgrpc: %w", err)
		}
		if seen[svc.Desc.ServiceName] {
			return nil, fmt.Errorf("fxgrpc: service %s registered twice", svc.Desc.ServiceName)
		}
		seen[svc.Desc.ServiceName] = true
	}
	s.health = newHealthServer(s)
	s.register(s.srv)
	s.registered = len(s.srv.GetServiceInfo())
	if s.metrics != nil {
		s.metrics.InitializeMetrics(s.srv)
	}
	s.stopping.OnBegin(s.health.shutdown)
	if len(opts.Services) > 0 {
		// Readiness waits until this server listens (fxcore.Stopping.Started).
		s.listening = s.stopping.ExpectStart()
	}
	return s, nil
}

// withWorkers replaces the grpc.Server NewServer built, which has not
// served, with one that has stream workers (see streamWorkers) and the same
// services. Its workers are goroutines that live until Stop, so NewServer
// does not start them: Fx never stops a server whose app failed to build or
// to start before it. The server is kept as it is when something was
// registered on GRPC() directly (only NewServer's services can be
// registered again).
func (s *Server) withWorkers() {
	if len(s.srv.GetServiceInfo()) != s.registered {
		return
	}
	srv := grpc.NewServer(append(s.srvOpts, grpc.NumStreamWorkers(streamWorkers))...)
	s.register(srv)
	s.srv.Stop() // never served: nothing to wait for
	s.srv = srv
}

// register registers the services, health and reflection on srv.
func (s *Server) register(srv *grpc.Server) {
	for _, svc := range s.services {
		srv.RegisterService(svc.Desc, svc.Impl)
	}
	healthgrpc.RegisterHealthServer(srv, s.health)
	if s.reflection {
		reflection.Register(srv)
	}
}

// streamWorkers is the number of goroutines that serve calls, kept from one
// call to the next (grpc.NumStreamWorkers), on a server that hosts a
// service. A call that finds them all busy gets a goroutine of its own, as
// every call does without them. A new goroutine starts with a small stack
// that a call through the interceptors, the handler and the OpenTelemetry
// SDK outgrows, and the runtime copies it to a larger one at each doubling:
// on a small unary call that copying was 8 % of the process's CPU
// (bench/results/grpc.md). A worker's stack has grown once for all its
// calls (grpc-go starts a fresh worker after 65536 of them).
const streamWorkers = 16

// serverOptions are the grpc.Server's options: the interceptor chain, the
// limits, keepalive and TLS.
func (s *Server) serverOptions(opts ServerOptions) ([]grpc.ServerOption, error) {
	cfg := s.cfg
	v := &validation{mv: opts.Validator}
	unary, stream := buildChain(newServerTracing(s.tp, s.prop), s.metrics, newCallLogger(s.log, cfg),
		newErrorMapper(s.log, opts.Classifiers), opts.Auth, v, opts.UnaryInterceptors, opts.StreamInterceptors)
	out := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgSize),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle:     cfg.MaxConnectionIdle,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
			Time:                  cfg.KeepaliveTime,
			Timeout:               cfg.KeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: cfg.KeepalivePermitWithoutStream,
		}),
	}
	if cfg.MaxConcurrentStreams > 0 {
		out = append(out, grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams))
	}
	tc, err := cfg.TLS.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("fxgrpc: TLS (MARTY_GRPC_TLS_CERT_FILE, MARTY_GRPC_TLS_KEY_FILE, MARTY_GRPC_TLS_CA_FILE): %w", err)
	}
	if tc != nil {
		out = append(out, grpc.Creds(credentials.NewTLS(tc)))
	}
	return out, nil
}

// GRPC returns the underlying *grpc.Server, e.g. to register a service
// outside AsService before Start.
func (s *Server) GRPC() *grpc.Server { return s.srv }

// Addr returns the bound address once started ("127.0.0.1:43121" for a
// config of "127.0.0.1:0"), or "" before.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lis == nil {
		return ""
	}
	return s.lis.Addr().String()
}

// dialAddr is an address a local client reaches the server at: the bound
// one, with an unspecified host (":50051", "[::]:50051") made loopback.
func (s *Server) dialAddr() string {
	addr := s.Addr()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// tlsOn reports whether the server serves TLS.
func (s *Server) tlsOn() bool { return s.cfg.TLS.ServerOn() }

// hosts reports whether a service other than health and reflection is
// registered (through AsService, or on GRPC() directly).
func (s *Server) hosts() bool {
	for name := range s.srv.GetServiceInfo() {
		if name != healthgrpc.Health_ServiceDesc.ServiceName && !strings.HasPrefix(name, "grpc.reflection.") {
			return true
		}
	}
	return false
}

// Start listens on Config.Addr and serves in the background; a bind error
// names the address, and a serve error later calls ServerOptions.Fatal.
// A server that hosts no service (no AsService, nothing registered on
// GRPC()) does not listen at all: Addr stays "", and a debug line says so.
func (s *Server) Start(ctx context.Context) error {
	if !s.hosts() {
		s.log.Debug("no gRPC service registered (fxgrpc.AsService): the gRPC server does not listen",
			zap.String("addr", s.cfg.Addr))
		return nil
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("fxgrpc: listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.MaxConnections > 0 {
		lis = netutil.LimitListener(lis, s.cfg.MaxConnections)
	}
	s.mu.Lock()
	s.withWorkers()
	s.lis = lis
	s.started = true
	// Stopped after the public HTTP server (whose gateway calls this
	// server) has drained, before the admin server.
	s.stage = s.stopping.AddStage(fxcore.StopStage{
		Name: "grpc", Order: fxcore.StopBack, DrainDelay: s.cfg.DrainDelay, Stop: s.stop,
	})
	s.mu.Unlock()
	go s.serve(lis)
	s.health.started()
	if s.listening != nil {
		s.listening()
	}
	s.log.Info("grpc server listening", zap.String("addr", lis.Addr().String()),
		zap.Int("services", len(s.services)), zap.Bool("tls", s.tlsOn()), zap.Bool("reflection", s.reflection))
	return nil
}

func (s *Server) serve(lis net.Listener) {
	defer close(s.serveDone)
	err := s.srv.Serve(lis)
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if err == nil || stopped || errors.Is(err, grpc.ErrServerStopped) {
		return
	}
	s.fatal(fmt.Errorf("fxgrpc: serve on %s: %w", lis.Addr(), err))
}

// Stop runs the app's stop sequence (fxcore.Stopping) unless another
// server's stop has begun it, and returns this server's part of it:
// health turns NOT_SERVING on every server at once, the largest drain delay
// configured across servers is waited once, the public HTTP server (and
// its gateway, which calls this server) drains, then this server stops
// gracefully: new calls are refused, calls in flight complete. When ctx
// ends first, the calls still running are cut off. Stop is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	g := s.stage
	if g == nil {
		s.stopped = true
	}
	s.mu.Unlock()
	if g == nil {
		s.stopping.Begin()
		s.srv.Stop() // never served: releases what NewServer made
		return nil
	}
	return g.Stop(ctx)
}

// stop is the server's stop stage: the graceful stop within ctx, then the
// hard one, then what must close after the server (the gateway's
// connection).
func (s *Server) stop(ctx context.Context) error {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.health.endWatches()

	graceful := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(graceful)
	}()
	var err error
	select {
	case <-graceful:
	case <-ctx.Done():
		s.srv.Stop()
		<-graceful
		err = fmt.Errorf("fxgrpc: graceful stop cut off by the stop deadline, calls in flight were cancelled: %w", ctx.Err())
		s.log.Warn("grpc graceful stop cut off", zap.Error(ctx.Err()))
	}
	<-s.serveDone
	for _, fn := range s.afterStop {
		fn()
	}
	return err
}

// serviceStatus describes one hosted service for the registry view.
type serviceStatus struct {
	Name    string   `json:"name"`
	Methods []string `json:"methods"`
	Streams []string `json:"streams,omitempty"`
	Health  string   `json:"health"`
}

// hosted lists the hosted services (health and reflection excluded) with
// their methods and current health status.
func (s *Server) hosted() []serviceStatus {
	out := make([]serviceStatus, 0, len(s.services))
	for _, svc := range s.services {
		st := serviceStatus{Name: svc.Desc.ServiceName, Health: s.health.status(svc.Desc.ServiceName).String()}
		for _, m := range svc.Desc.Methods {
			st.Methods = append(st.Methods, m.MethodName)
		}
		for _, m := range svc.Desc.Streams {
			st.Streams = append(st.Streams, m.StreamName)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
