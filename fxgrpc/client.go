package fxgrpc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
)

// Breaker is a circuit breaker guarding a client: *fxmonitor.Breaker
// satisfies it. Execute runs fn unless the breaker is open, and counts
// fn's error as a failure.
type Breaker interface {
	Execute(fn func() error) error
}

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

type clientOptions struct {
	tp          trace.TracerProvider
	prop        propagation.TextMapPropagator
	reg         prometheus.Registerer
	metrics     *grpcprom.ClientMetrics
	timeout     time.Duration
	maxAttempts int
	breaker     Breaker
	tls         fxcore.TLS
	dial        []grpc.DialOption
}

// WithTracerProvider sets the tracer provider (default: otel's global one).
func WithTracerProvider(tp trace.TracerProvider) ClientOption {
	return func(o *clientOptions) { o.tp = tp }
}

// WithPropagator sets how trace context is sent (default: otel's global
// propagator).
func WithPropagator(p propagation.TextMapPropagator) ClientOption {
	return func(o *clientOptions) { o.prop = p }
}

// WithRegisterer records the grpc_client_* metrics (go-grpc-middleware's
// series: started, handled by code, handling seconds, messages) in reg;
// connections made with the same registry share them. Default: no metrics.
func WithRegisterer(reg prometheus.Registerer) ClientOption {
	return func(o *clientOptions) { o.reg = reg }
}

// withMetrics records the metrics in m, registered already (*Clients).
func withMetrics(m *grpcprom.ClientMetrics) ClientOption {
	return func(o *clientOptions) { o.metrics = m }
}

// WithTimeout sets the deadline of unary calls whose context has none
// (default 10s; 0 or less sets none).
func WithTimeout(d time.Duration) ClientOption {
	return func(o *clientOptions) { o.timeout = d }
}

// WithMaxAttempts sets the attempts of a call failing with UNAVAILABLE,
// retried with exponential backoff by grpc-go (default 3; 1 disables).
func WithMaxAttempts(n int) ClientOption {
	return func(o *clientOptions) { o.maxAttempts = n }
}

// WithBreaker guards unary calls with b: while it is open they fail at once
// with UNAVAILABLE. Unavailable, DeadlineExceeded, Internal, Unknown and
// DataLoss count as failures; the caller's own errors (InvalidArgument,
// NotFound...) do not.
func WithBreaker(b Breaker) ClientOption {
	return func(o *clientOptions) { o.breaker = b }
}

// WithTLS dials with TLS as t says (the type of every martyfx TLS
// setting; ClientConfig.TLS for named clients): on when t.Enabled or any of
// its files is set, CAFile verifying the server (the system roots when
// empty), CertFile and KeyFile the client certificate for mutual TLS.
// NewClient reads the files and fails when they do not load. The zero TLS
// dials plaintext, the default. A *tls.Config built in code goes through
// WithDialOptions(grpc.WithTransportCredentials(credentials.NewTLS(c))).
func WithTLS(t fxcore.TLS) ClientOption {
	return func(o *clientOptions) { o.tls = t }
}

// WithDialOptions appends raw grpc dial options (after fxgrpc's, so they
// win: a grpc.WithTransportCredentials replaces WithTLS's).
func WithDialOptions(opts ...grpc.DialOption) ClientOption {
	return func(o *clientOptions) { o.dial = append(o.dial, opts...) }
}

// NewClient returns an instrumented client connection to target: otelgrpc
// spans and propagation, client metrics (WithRegisterer), a default deadline,
// retries of UNAVAILABLE through the service config, round-robin balancing
// for dns:/// targets and an optional circuit breaker. Like grpc.NewClient it
// does not connect until the first call.
func NewClient(target string, opts ...ClientOption) (*grpc.ClientConn, error) {
	o := clientOptions{timeout: defaultClientTimeout, maxAttempts: 3}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tp == nil {
		o.tp = otel.GetTracerProvider()
	}
	if o.prop == nil {
		o.prop = otel.GetTextMapPropagator()
	}
	creds := insecure.NewCredentials()
	if err := o.tls.Validate("tls"); err != nil {
		return nil, fmt.Errorf("fxgrpc: client for %s: %w", target, err)
	}
	tc, err := o.tls.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("fxgrpc: client for %s: %w", target, err)
	}
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	if o.metrics == nil && o.reg != nil {
		if o.metrics, err = registerClientMetrics(o.reg); err != nil {
			return nil, err
		}
	}
	var unary []grpc.UnaryClientInterceptor
	var stream []grpc.StreamClientInterceptor
	if o.timeout > 0 {
		unary = append(unary, deadlineUnary(o.timeout))
	}
	if o.metrics != nil {
		unary = append(unary, o.metrics.UnaryClientInterceptor())
		stream = append(stream, o.metrics.StreamClientInterceptor())
	}
	if o.breaker != nil {
		unary = append(unary, breakerUnary(o.breaker))
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(o.tp), otelgrpc.WithPropagators(o.prop))),
		grpc.WithDefaultServiceConfig(serviceConfig(target, o.maxAttempts)),
		grpc.WithChainUnaryInterceptor(unary...),
		grpc.WithChainStreamInterceptor(stream...),
	}
	conn, err := grpc.NewClient(target, append(dial, o.dial...)...)
	if err != nil {
		return nil, fmt.Errorf("fxgrpc: client for %s: %w", target, err)
	}
	return conn, nil
}

// serviceConfig is the default service config: retries of UNAVAILABLE and,
// for dns:/// targets, round-robin over every resolved address.
func serviceConfig(target string, maxAttempts int) string {
	var parts []string
	if strings.HasPrefix(target, "dns:") {
		parts = append(parts, `"loadBalancingConfig":[{"round_robin":{}}]`)
	}
	if maxAttempts > 1 {
		parts = append(parts, fmt.Sprintf(`"methodConfig":[{"name":[{}],"retryPolicy":{"maxAttempts":%d,`+
			`"initialBackoff":"0.05s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]`,
			maxAttempts))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func deadlineUnary(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func breakerUnary(b Breaker) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		var callErr error
		ran := false
		err := b.Execute(func() error {
			ran = true
			callErr = invoker(ctx, method, req, reply, cc, opts...)
			if breakerFailure(callErr) {
				return callErr
			}
			return nil
		})
		if !ran {
			return status.Errorf(codes.Unavailable, "fxgrpc: circuit breaker for %s is open: %v", cc.Target(), err)
		}
		return callErr
	}
}

func breakerFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
}

// Clients holds the app's client connections: the named ones from
// Config.Clients (MARTY_GRPC_CLIENTS_<NAME>_TARGET) and those made with New.
// All share the app's tracer provider and client metrics, and are closed
// when the app stops.
type Clients struct {
	cfg      map[string]ClientConfig
	tp       trace.TracerProvider
	prop     propagation.TextMapPropagator
	metrics  *grpcprom.ClientMetrics
	breakers BreakerSource
	log      *zap.Logger

	mu     sync.Mutex
	named  map[string]*grpc.ClientConn
	conns  []*grpc.ClientConn
	closed bool
}

// BreakerSource hands out circuit breakers by name: *fxmonitor.Breakers
// satisfies it through fxgrpc.Module.
type BreakerSource interface {
	Breaker(name string) Breaker
}

// ClientsOptions are NewClients' dependencies besides the Config. Every
// field is optional; fxgrpc.Module fills them from the app's graph.
type ClientsOptions struct {
	// Logger is kept for the clients' logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Registerer receives the grpc_client_* metrics of every connection;
	// nil: they are not registered.
	Registerer prometheus.Registerer
	// TracerProvider makes the client spans; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator sends the trace context; nil: otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
	// Breakers hands out the circuit breakers of clients configured with
	// Breaker; nil: such a client is an error (Module uses fxmonitor's).
	Breakers BreakerSource
}

// NewClients validates cfg and returns the client set (Config.Clients),
// registering the client metrics; connections are made on first use.
func NewClients(cfg Config, opts ClientsOptions) (*Clients, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxgrpc: %w", err)
	}
	c := &Clients{cfg: cfg.Clients, tp: opts.TracerProvider, prop: opts.Propagator, breakers: opts.Breakers,
		log: opts.Logger, named: map[string]*grpc.ClientConn{}}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if opts.Registerer != nil {
		m, err := registerClientMetrics(opts.Registerer)
		if err != nil {
			return nil, err
		}
		c.metrics = m
	}
	return c, nil
}

// registerClientMetrics registers the client metrics in reg, or returns
// those registered there already.
func registerClientMetrics(reg prometheus.Registerer) (*grpcprom.ClientMetrics, error) {
	m := grpcprom.NewClientMetrics(grpcprom.WithClientHandlingTimeHistogram())
	if err := reg.Register(m); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*grpcprom.ClientMetrics); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("fxgrpc: register client metrics: %w", err)
	}
	return m, nil
}

// Names lists the configured client names.
func (c *Clients) Names() []string {
	names := make([]string, 0, len(c.cfg))
	for n := range c.cfg {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Get returns the named client from the config, made on first use.
func (c *Clients) Get(name string) (*grpc.ClientConn, error) {
	name = strings.ToLower(name)
	c.mu.Lock()
	defer c.mu.Unlock()
	if conn, ok := c.named[name]; ok {
		return conn, nil
	}
	cc, ok := c.cfg[name]
	if !ok {
		return nil, fmt.Errorf("fxgrpc: no client named %q: set %s", name,
			fxcore.EnvName("grpc", "clients."+name+".target"))
	}
	opts := []ClientOption{WithTimeout(cc.Timeout), WithMaxAttempts(cc.MaxAttempts)}
	if cc.Timeout == 0 {
		opts[0] = WithTimeout(defaultClientTimeout)
	}
	if cc.MaxAttempts == 0 {
		opts[1] = WithMaxAttempts(3)
	}
	if cc.TLS.ClientOn() {
		opts = append(opts, WithTLS(cc.TLS))
	}
	if cc.Breaker {
		if c.breakers == nil {
			return nil, fmt.Errorf("fxgrpc: client %q: breaker needs fxmonitor.Module in the app", name)
		}
		opts = append(opts, WithBreaker(c.breakers.Breaker("grpc."+name)))
	}
	conn, err := c.newLocked(cc.Target, opts)
	if err != nil {
		return nil, err
	}
	c.named[name] = conn
	return conn, nil
}

// New returns an instrumented connection with the app's tracer provider and
// metrics, closed when the app stops.
func (c *Clients) New(target string, opts ...ClientOption) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.newLocked(target, opts)
}

func (c *Clients) newLocked(target string, opts []ClientOption) (*grpc.ClientConn, error) {
	if c.closed {
		return nil, errors.New("fxgrpc: clients are closed: the app is stopping")
	}
	base := []ClientOption{withMetrics(c.metrics)}
	if c.tp != nil {
		base = append(base, WithTracerProvider(c.tp))
	}
	if c.prop != nil {
		base = append(base, WithPropagator(c.prop))
	}
	conn, err := NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, err
	}
	c.conns = append(c.conns, conn)
	return conn, nil
}

// Close closes every connection.
func (c *Clients) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	var errs []error
	for _, conn := range c.conns {
		if err := conn.Close(); err != nil && status.Code(err) != codes.Canceled {
			errs = append(errs, err)
		}
	}
	c.conns = nil
	c.named = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}
