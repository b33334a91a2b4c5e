package fxgrpc

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverCore is the outer part of the built-in unary chain, tracing,
// metrics, logging, error mapping and recovery (1 to 5 in buildChain's
// order), fused into one interceptor. It does what the five interceptors
// would do in that order, for less: grpc-go's chain allocates a handler
// closure per interceptor and per call, each step deepens the call's stack
// (which grows, and is copied, on a new goroutine), and each step looked
// its method up, took the time and decoded the status again. Here a call
// makes one method lookup (tracing and metrics both), one time.Now and one
// status decode.
//
// A nil part is skipped: the test helpers build a core of tracing alone or
// metrics alone to compare them with otelgrpc and go-grpc-middleware.
// Streams keep the separate interceptors.
type serverCore struct {
	tracing *serverTracing
	metrics *serverMetrics
	log     *callLogger
	subject bool // an AuthFunc may name the caller (SetSubject) for the log line
	errs    *errorMapper
	recover *zap.Logger // nil: panics are not recovered here
	// validate, when set, validates the request inside the recovery (no
	// interceptor sits between them).
	validate *validation
	methods  sync.Map // full method -> *coreMethod
}

// coreMethod is what the core knows about a unary method, resolved once.
type coreMethod struct {
	trace   *methodTrace   // nil without tracing
	metrics *methodMetrics // nil without metrics
}

func (c *serverCore) method(full string) *coreMethod {
	if m, ok := c.methods.Load(full); ok {
		return m.(*coreMethod)
	}
	m := &coreMethod{}
	if c.tracing != nil {
		m.trace = c.tracing.method(full)
	}
	if c.metrics != nil {
		m.metrics = c.metrics.method(full, "unary")
	}
	v, _ := c.methods.LoadOrStore(full, m)
	return v.(*coreMethod)
}

func (c *serverCore) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	m := c.method(info.FullMethod)
	start := time.Now()
	var span trace.Span
	if m.trace != nil && m.trace.traced {
		ctx, span = c.tracing.startMethod(ctx, m.trace)
	}
	mm := m.metrics
	if mm != nil {
		mm.started.Inc()
		mm.received.Inc()
	}
	inner := ctx
	var subject string
	if c.subject {
		inner = context.WithValue(ctx, subjectKey{}, &subject)
	}
	resp, err := c.handle(inner, req, info, handler)
	code := codes.OK
	if err != nil {
		if c.errs != nil {
			err = c.errs.mapError(inner, info.FullMethod, err)
		}
		code = status.Code(err)
	}
	if mm != nil {
		if err == nil {
			mm.sent.Inc()
		}
		mm.handledCounter(code).Inc()
		mm.seconds.Observe(time.Since(start).Seconds())
	}
	if c.log != nil {
		c.log.finishedCode(ctx, info.FullMethod, start, code, err, subject)
	}
	if span != nil {
		c.tracing.endCode(ctx, span, code, err)
	}
	return resp, err
}

// handle calls the rest of the chain, turning a panic into the Internal
// status recovery answers with.
func (c *serverCore) handle(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	if c.recover != nil {
		defer func() {
			if r := recover(); r != nil {
				err = panicked(ctx, c.recover, info.FullMethod, r)
			}
		}()
	}
	if c.validate != nil {
		if err := c.validate.validate(req); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// localAddrs caches the server.address and server.port attributes of the
// connections' local addresses (one net.Addr per connection), so a
// sampled call does not format and split the address again; like peers,
// it is emptied when it holds maxPeers.
var (
	localAddrs     sync.Map // net.Addr -> []attribute.KeyValue
	localAddrCount atomic.Int32
)

func localAddrAttrs(a net.Addr) []attribute.KeyValue {
	switch a.(type) {
	case *net.TCPAddr, *net.UnixAddr:
	default:
		return serverAddrAttrs(nil, a.String())
	}
	if v, ok := localAddrs.Load(a); ok {
		return v.([]attribute.KeyValue)
	}
	attrs := serverAddrAttrs(make([]attribute.KeyValue, 0, 2), a.String())
	if localAddrCount.Add(1) > maxPeers {
		localAddrs.Clear()
		localAddrCount.Store(0)
	}
	localAddrs.Store(a, attrs)
	return attrs
}
