package fxgrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/martyfx/martyfx/fxcore"
)

// ServerParams are the Server's dependencies; Fx fills them, and code
// without Fx fills the struct itself (only Config and Logger are required).
type ServerParams struct {
	fx.In

	Config     Config
	Logger     *zap.Logger
	Info       fxcore.ServiceInfo            `optional:"true"`
	Registerer prometheus.Registerer         `optional:"true"`
	Stopping   *fxcore.Stopping              `optional:"true"`
	Shutdowner fx.Shutdowner                 `optional:"true"`
	Tracer     trace.TracerProvider          `optional:"true"`
	Propagator propagation.TextMapPropagator `optional:"true"`
	Auth       AuthFunc                      `optional:"true"`
	Readiness  Readiness                     `optional:"true"`
	Services   []Service                     `group:"martyfx.grpc.services"`
	Unary      []UnaryInterceptor            `group:"martyfx.grpc.unary_interceptors"`
	Stream     []StreamInterceptor           `group:"martyfx.grpc.stream_interceptors"`
	// Classifiers classify handler errors (fxcore.AsClassifier; fxrepo
	// registers its database classifier this way).
	Classifiers []fxcore.Classifier `group:"martyfx.core.classifiers"`
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
	shutdowner fx.Shutdowner
	readiness  Readiness
	metrics    *serverMetrics
	tlsCerts   []tls.Certificate
	tp         trace.TracerProvider
	prop       propagation.TextMapPropagator

	mu        sync.Mutex
	lis       net.Listener
	started   bool
	stopped   bool
	serveDone chan struct{}
	stage     *fxcore.Stage // once listening
	afterStop []func()
}

// NewServer builds the server, registers the services, health, reflection
// and metrics; Start listens.
func NewServer(p ServerParams) (*Server, error) {
	cfg := p.Config
	log := p.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("grpc")
	stopping := p.Stopping
	if stopping == nil {
		stopping = fxcore.NewStopping(fxcore.WithStopLogger(log))
	}
	tp := p.Tracer
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := p.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	s := &Server{
		cfg: cfg, log: log, services: p.Services, stopping: stopping,
		shutdowner: p.Shutdowner, readiness: p.Readiness, serveDone: make(chan struct{}),
		tp: tp, prop: prop,
	}
	s.reflection = cfg.Reflection == "on" || (cfg.Reflection == "auto" && !p.Info.IsProduction())

	if p.Registerer != nil {
		s.metrics = newServerMetrics()
		if err := p.Registerer.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("fxgrpc: register server metrics: %w", err)
		}
	}
	v, err := newValidation()
	if err != nil {
		return nil, err
	}
	unary, stream := buildChain(newServerTracing(tp, prop), s.metrics, newCallLogger(log, cfg),
		newErrorMapper(log, p.Classifiers), p.Auth, v, p.Unary, p.Stream)

	opts := []grpc.ServerOption{
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
		opts = append(opts, grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams))
	}
	if cfg.TLSCertFile != "" {
		tc, err := serverTLS(cfg)
		if err != nil {
			return nil, err
		}
		s.tlsCerts = tc.Certificates
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	s.srv = grpc.NewServer(opts...)

	seen := map[string]bool{}
	for _, svc := range p.Services {
		if err := checkImpl(svc.Desc, svc.Impl); err != nil {
			return nil, fmt.Errorf("fxgrpc: %w", err)
		}
		if seen[svc.Desc.ServiceName] {
			return nil, fmt.Errorf("fxgrpc: service %s registered twice", svc.Desc.ServiceName)
		}
		seen[svc.Desc.ServiceName] = true
		s.srv.RegisterService(svc.Desc, svc.Impl)
	}
	s.health = newHealthServer(s)
	healthgrpc.RegisterHealthServer(s.srv, s.health)
	if s.reflection {
		reflection.Register(s.srv)
	}
	if s.metrics != nil {
		s.metrics.InitializeMetrics(s.srv)
	}
	stopping.OnBegin(s.health.shutdown)
	return s, nil
}

func serverTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("fxgrpc: load TLS key pair MARTY_GRPC_TLS_CERT_FILE=%s MARTY_GRPC_TLS_KEY_FILE=%s: %w",
			cfg.TLSCertFile, cfg.TLSKeyFile, err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCAFile != "" {
		pool, err := loadPool(cfg.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("fxgrpc: MARTY_GRPC_TLS_CLIENT_CA_FILE: %w", err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificate in %s", file)
	}
	return pool, nil
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

// TLS reports whether the server serves TLS.
func (s *Server) TLS() bool { return s.cfg.TLSCertFile != "" }

// Start listens on Config.Addr and serves in the background. A bind error
// names the address. A serve error later shuts the app down (exit code 1).
func (s *Server) Start(context.Context) error {
	lis, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("fxgrpc: listen on %s: %w", s.cfg.Addr, err)
	}
	if s.cfg.MaxConnections > 0 {
		lis = netutil.LimitListener(lis, s.cfg.MaxConnections)
	}
	s.mu.Lock()
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
	s.log.Info("grpc server listening", zap.String("addr", lis.Addr().String()),
		zap.Int("services", len(s.services)), zap.Bool("tls", s.TLS()), zap.Bool("reflection", s.reflection))
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
	err = fmt.Errorf("fxgrpc: serve on %s: %w", lis.Addr(), err)
	if s.shutdowner != nil {
		fxcore.ShutdownOnError(s.shutdowner, s.log, "grpc server", err)
		return
	}
	s.log.Error("grpc server failed", zap.Error(err))
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

// ServiceStatus describes one hosted service for the registry view.
type ServiceStatus struct {
	Name    string   `json:"name"`
	Methods []string `json:"methods"`
	Streams []string `json:"streams,omitempty"`
	Health  string   `json:"health"`
}

// Services lists the hosted services (health and reflection excluded) with
// their methods and current health status.
func (s *Server) Services() []ServiceStatus {
	out := make([]ServiceStatus, 0, len(s.services))
	for _, svc := range s.services {
		st := ServiceStatus{Name: svc.Desc.ServiceName, Health: s.health.status(svc.Desc.ServiceName).String()}
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
