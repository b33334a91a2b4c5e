package fxhttp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxtracing"
)

// RequestIDHeader is the header carrying the request id both ways.
const RequestIDHeader = "X-Request-Id"

// stack is the built-in middleware of one server, fused into one handler so
// a request costs one wrapper, one context value and one request copy:
// recovery, request id, tracing, RED metrics, access log, body limit, in
// that order, around the middleware of negative Order and the ServeMux.
type stack struct {
	server    string
	next      http.Handler // the ServeMux, or the middleware around it
	routes    map[string]*routeInfo
	unmatched *routeInfo
	set       *sync.Map // route (SetRoute) -> *routeInfo
	metrics   *serverMetrics
	inflight  prometheus.Gauge
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	propKeys  []string
	log       *zap.Logger
	logMode   string
	logRatio  float64
	maxBody   int64
	mappers   []ErrorStatus
	classify  []fxcore.Classifier
}

// reqState is everything a request needs, in one allocation: the request
// id header's value and the context carrying the request info are part of
// it too.
type reqState struct {
	rec   recorder
	body  bodyReader
	info  requestInfo
	ctx   infoCtx
	idHdr [1]string
}

// infoCtx is the request's context with its *requestInfo under infoKey{},
// what context.WithValue would make, without an allocation of its own.
type infoCtx struct {
	context.Context
	info *requestInfo
}

func (c *infoCtx) Value(key any) any {
	if _, ok := key.(infoKey); ok {
		return c.info
	}
	return c.Context.Value(key)
}

// maxAttrs bounds the span attributes a request sets (request and response).
const maxAttrs = 18

// attrsPool recycles span attribute slices: SetAttributes copies them.
var attrsPool = sync.Pool{New: func() any { s := make([]attribute.KeyValue, 0, maxAttrs); return &s }}

// fieldsPool recycles access log field slices: zap cores encode the fields
// during Write and do not keep the slice.
var fieldsPool = sync.Pool{New: func() any { s := make([]zap.Field, 0, 12); return &s }}

var serverKind = trace.WithSpanKind(trace.SpanKindServer)

// newStack is the built-in stack both servers share, before forServer.
func newStack(cfg Config, opts ServerOptions, log *zap.Logger) (stack, error) {
	metrics, err := newServerMetrics(opts.Registerer)
	if err != nil {
		return stack{}, err
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	prop := opts.Propagator
	if prop == nil {
		prop = otel.GetTextMapPropagator()
	}
	return stack{
		tracer:   tp.Tracer(instrumentationName),
		prop:     prop,
		propKeys: propagatorFields(prop),
		metrics:  metrics,
		log:      log,
		logMode:  cfg.AccessLog,
		logRatio: cfg.AccessLogRatio,
		maxBody:  cfg.MaxBodyBytes,
		mappers:  slices.Clone(opts.ErrorStatus),
		classify: slices.Clone(opts.Classifiers),
	}, nil
}

// forServer is the stack of one server, around next, knowing the patterns
// of its ServeMux.
func (s stack) forServer(name string, next http.Handler, patterns []string) *stack {
	st := s
	st.server = name
	st.next = next
	st.inflight = s.metrics.inflight.WithLabelValues(name)
	st.routes = make(map[string]*routeInfo, len(patterns))
	for _, p := range patterns {
		st.routes[p] = newRouteInfo(name, p, s.metrics)
	}
	st.unmatched = newRouteInfo(name, "", s.metrics)
	st.unmatched.route = "unmatched"
	st.set = new(sync.Map)
	return &st
}

// routeOf returns what the request matched: the route a handler set
// (SetRoute), else the server's pattern, else unmatched.
func (s *stack) routeOf(info *requestInfo) *routeInfo {
	if info.routeSet {
		if info.route == "" {
			return s.unmatched
		}
		if ri, ok := s.set.Load(info.route); ok {
			return ri.(*routeInfo)
		}
		ri, _ := s.set.LoadOrStore(info.route, newRouteInfo(s.server, info.route, s.metrics))
		return ri.(*routeInfo)
	}
	if ri := s.routes[info.pattern]; ri != nil {
		return ri
	}
	return s.unmatched
}

func (s *stack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &reqState{}
	st.rec.w = w

	// Request id: the client's when it is sane, else a new one.
	id := r.Header.Get(RequestIDHeader)
	if !validRequestID(id) {
		id = newRequestID()
	}
	st.idHdr[0] = id
	w.Header()[RequestIDHeader] = st.idHdr[:]
	st.info = requestInfo{id: id, mappers: s.mappers, classifiers: s.classify}
	st.rec.path, st.rec.id = r.URL.Path, id
	st.ctx = infoCtx{Context: r.Context(), info: &st.info}
	var ctx context.Context = &st.ctx

	// Tracing, except for probes and scrapes.
	var span trace.Span
	if !untracedPaths[r.URL.Path] {
		if hasAny(r.Header, s.propKeys) {
			ctx = s.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		// The attributes are set once, at the end, and only on recording
		// spans: an unsampled request builds none, a sampled one copies
		// them once into the span.
		ctx, span = s.tracer.Start(ctx, spanName(r.Method, ""), serverKind)
	}
	r2 := r.WithContext(ctx)

	// Body limit: refuse a declared oversize body at once, cut the others
	// (chunked, HTTP/2 without content-length) while read; the recorder
	// then answers 413 whatever the handler makes of the read error.
	if r.Body != nil && r.Body != http.NoBody {
		st.body = bodyReader{rc: r.Body, rec: &st.rec, limit: s.maxBody, remaining: s.maxBody}
		r2.Body = &st.body
	}

	s.inflight.Inc()
	defer func() { s.finish(st, r2, span, start, recover()) }()
	if s.maxBody > 0 && r.ContentLength > s.maxBody {
		st.rec.Header().Set("Connection", "close")
		writeProblem(&st.rec, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("body is larger than %d bytes", s.maxBody), r.URL.Path, id)
		return
	}
	s.next.ServeHTTP(&st.rec, r2)
}

// finish runs after the handler, panicking or not: recovery, metrics, span,
// access log.
func (s *stack) finish(st *reqState, r *http.Request, span trace.Span, start time.Time, panicked any) {
	s.inflight.Dec()
	abort := false
	if panicked != nil {
		abort = true
		if err, _ := panicked.(error); !errors.Is(err, http.ErrAbortHandler) {
			s.log.Error("http handler panicked", append([]zap.Field{
				zap.String("panic", fmt.Sprint(panicked)),
				zap.String("method", r.Method),
				zap.String("path", r.URL.Path),
				zap.String("pattern", st.info.pattern),
				zap.String("request_id", st.info.id),
				zap.ByteString("stack", debug.Stack()),
			}, fxtracing.LogFields(r.Context())...)...)
			if !st.rec.wroteHeader && !st.rec.hijacked {
				writeProblem(&st.rec, http.StatusInternalServerError, "", r.URL.Path, st.info.id)
				abort = false
			}
		}
		if span != nil {
			span.SetStatus(codes.Error, fmt.Sprintf("panic: %v", panicked))
		}
	}
	status := st.rec.status
	if status == 0 {
		status = http.StatusOK // net/http writes 200 for a handler that wrote nothing
		if abort {
			status = http.StatusInternalServerError
		}
	}
	elapsed := time.Since(start)
	ri := s.routeOf(&st.info)
	method := standardMethod(r.Method)
	ri.observe(method, status, elapsed.Seconds())

	if span != nil {
		if ri != s.unmatched {
			if method != "" && method == ri.method {
				span.SetName(ri.spanName)
			} else {
				span.SetName(spanName(r.Method, ri.route))
			}
		}
		if span.IsRecording() {
			pooled := attrsPool.Get().(*[]attribute.KeyValue)
			attrs := append(requestAttrs((*pooled)[:0], r), requestIDKey.String(st.info.id))
			if ri != s.unmatched {
				attrs = append(attrs, semconv.HTTPRoute(ri.route))
			}
			attrs = append(attrs, semconv.HTTPResponseStatusCode(status))
			if st.rec.bytes > 0 {
				attrs = append(attrs, semconv.HTTPResponseBodySize(int(st.rec.bytes)))
			}
			if st.body.read > 0 {
				attrs = append(attrs, semconv.HTTPRequestBodySize(int(st.body.read)))
			}
			span.SetAttributes(attrs...) // the SDK copies them
			clear(attrs)
			*pooled = attrs[:0]
			attrsPool.Put(pooled)
			if status >= 500 && panicked == nil && st.info.err == nil { // WriteError set it, with the error
				span.SetStatus(codes.Error, "")
			}
		}
		span.End()
	}

	// span is nil exactly for the probe and scrape paths, which are not logged.
	if s.logMode != AccessLogOff && span != nil &&
		(s.logMode == AccessLogAll || status >= 500 || rand.Float64() < s.logRatio) {
		s.accessLog(st, r, span, ri, status, elapsed)
	} else if st.info.err != nil && status >= 500 {
		// The client was told "internal error (ref <request id>)": the
		// line with that id and the full error is written even without
		// an access log.
		s.log.Error("http request failed", append([]zap.Field{
			zap.String("method", r.Method),
			zap.String("path", r.URL.Path),
			zap.Int("status", status),
			zap.String("request_id", st.info.id),
			zap.Error(st.info.err),
		}, fxtracing.LogFields(r.Context())...)...)
	}
	if abort {
		panic(http.ErrAbortHandler)
	}
}

func (s *stack) accessLog(st *reqState, r *http.Request, span trace.Span, ri *routeInfo, status int, elapsed time.Duration) {
	ce := s.log.Check(zap.InfoLevel, "http request")
	if ce == nil {
		return
	}
	pooled := fieldsPool.Get().(*[]zap.Field)
	defer func() {
		clear(*pooled)
		*pooled = (*pooled)[:0]
		fieldsPool.Put(pooled)
	}()
	fields := append((*pooled)[:0],
		zap.String("method", r.Method),
		zap.String("path", r.URL.Path),
		zap.String("route", ri.route),
		zap.Int("status", status),
		zap.Int64("bytes", st.rec.bytes),
		zap.Duration("duration", elapsed),
		zap.String("request_id", st.info.id),
	)
	if span != nil {
		// The fields of fxtracing.LogFields, without its slice allocation.
		if sc := span.SpanContext(); sc.IsValid() {
			fields = append(fields, zap.String("trace_id", sc.TraceID().String()), zap.String("span_id", sc.SpanID().String()))
		}
	}
	if st.info.subject != "" {
		fields = append(fields, zap.String("subject", st.info.subject))
	}
	if st.info.err != nil {
		fields = append(fields, zap.Error(st.info.err))
	}
	ce.Write(fields...)
	*pooled = fields
}

// spanName follows the HTTP semantic conventions: "{method} {route}", just
// the method when no route matched, "HTTP" for a non-standard method.
func spanName(method, route string) string {
	m := standardMethod(method)
	if m == "" {
		m = "HTTP"
	}
	if route == "" {
		return m
	}
	return m + " " + route
}

// validRequestID accepts 1 to 128 visible ASCII characters.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// newRequestID returns 128 random bits in hex.
func newRequestID() string {
	var b [16]byte
	var out [32]byte
	u, v := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(u >> (8 * i))
		b[8+i] = byte(v >> (8 * i))
	}
	hex.Encode(out[:], b[:])
	return string(out[:])
}
