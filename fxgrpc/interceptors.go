package fxgrpc

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/martyfx/martyfx/fxcore"
)

// The built-in chain, outermost first, for unary and stream calls alike:
//
//  1. tracing: the call's OpenTelemetry server span, continuing the
//     caller's trace (otelgrpc's spans; see serverTracing);
//  2. metrics: grpc_server_started_total, grpc_server_handled_total{grpc_code},
//     grpc_server_handling_seconds, grpc_server_msg_{received,sent}_total
//     (go-grpc-middleware's prometheus provider's series; see serverMetrics);
//  3. logging: one zap line per finished call, level by code;
//  4. errors: the handler's error becomes the status the client gets
//     (see errorMapper): classified errors their class's code and public
//     message, UNAVAILABLE with a RetryInfo, anything unclassified
//     "internal error (ref <id>)" with the full error logged under the ref;
//  5. recovery: a panic becomes codes.Internal, its stack is logged;
//  6. user interceptors with Order < 0, ascending;
//  7. auth: the AuthFunc, when one is in the graph (not for health and reflection);
//  8. validation: Validate() / ValidateAll() errors, or else the
//     MessageValidator's (fxgrpc/bufvalidate: buf.validate rules), become
//     InvalidArgument with a google.rpc.BadRequest detail;
//  9. user interceptors with Order >= 0, ascending, then the handler.
//
// Tracing, metrics and logging sit outside the error mapping and recovery
// so a call is traced, counted and logged with the code it is answered
// with. For unary calls, 1 to 5 are one interceptor (serverCore), and so is
// validation when nothing sits between it and recovery (no auth, no user
// interceptor of negative Order).
func buildChain(tracing *serverTracing, metrics *serverMetrics, log *callLogger, errs *errorMapper, auth AuthFunc, v *validation,
	unary []UnaryInterceptor, stream []StreamInterceptor,
) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	unary, stream = slices.Clone(unary), slices.Clone(stream)
	slices.SortStableFunc(unary, func(a, b UnaryInterceptor) int { return a.Order - b.Order })
	slices.SortStableFunc(stream, func(a, b StreamInterceptor) int { return a.Order - b.Order })

	core := &serverCore{tracing: tracing, metrics: metrics, log: log, subject: log != nil && auth != nil,
		errs: errs, recover: log.base()}
	us := []grpc.UnaryServerInterceptor{core.unary}
	ss := []grpc.StreamServerInterceptor{tracing.stream}
	if metrics != nil {
		ss = append(ss, metrics.stream)
	}
	if log != nil && auth != nil {
		// The call's line names the caller the AuthFunc verified (SetSubject).
		ss = append(ss, log.streamSubject)
	} else if log != nil {
		ss = append(ss, log.stream)
	}
	ss = append(ss, errs.stream, recoverStream(log.base()))
	between := auth != nil
	for _, u := range unary {
		if u.Order < 0 {
			us = append(us, u.Interceptor)
			between = true
		}
	}
	for _, s := range stream {
		if s.Order < 0 {
			ss = append(ss, s.Interceptor)
		}
	}
	if auth != nil {
		us = append(us, authUnary(auth))
		ss = append(ss, authStream(auth))
	}
	if between {
		us = append(us, v.unary)
	} else {
		core.validate = v
	}
	ss = append(ss, v.stream)
	for _, u := range unary {
		if u.Order >= 0 {
			us = append(us, u.Interceptor)
		}
	}
	for _, s := range stream {
		if s.Order >= 0 {
			ss = append(ss, s.Interceptor)
		}
	}
	return us, ss
}

// ---- recovery ----

func recoverStream(log *zap.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = panicked(ss.Context(), log, info.FullMethod, r)
			}
		}()
		return handler(srv, ss)
	}
}

// panicked logs a recovered panic with its stack and a reference, and
// returns the Internal status the caller gets, "internal error (ref
// <ref>)"; the panic value stays in the log, not on the wire.
func panicked(ctx context.Context, log *zap.Logger, method string, r any) error {
	ref := newRef()
	fields := []zap.Field{zap.String("grpc.method", method), zap.String("ref", ref), zap.Any("panic", r), zap.StackSkip("stack", 2)}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		fields = append(fields, zap.Stringer("trace_id", sc.TraceID()))
	}
	log.Error("grpc handler panicked", fields...)
	return &referenced{st: status.New(codes.Internal, internalMessage(ref))}
}

// ---- errors ----

// errorMapper turns the error a handler returns into the status its
// client gets, so that no driver text, host, user or database name reaches
// a client:
//
//   - an error that is itself a gRPC status (status.Error) keeps its code
//     and message, except Unknown, Internal and DataLoss, whose message is
//     replaced with "internal error (ref <id>)";
//   - a classified error (fxcore.Classified in the chain, a context error,
//     or one a registered fxcore.Classifier knows, such as fxrepo's
//     database errors) gets its class's code (ClassCode) and public
//     message; a context.Canceled while the call itself is not cancelled is
//     a server-side cancellation, UNAVAILABLE;
//   - an error that wraps a gRPC status (a downstream call's) keeps that
//     status, with the same rule for internal codes;
//   - anything else is INTERNAL "internal error (ref <id>)".
//
// Every UNAVAILABLE gets a google.rpc.RetryInfo detail (DefaultRetryAfter
// unless the error says otherwise), which the gateway turns into
// Retry-After. The internal errors are logged at error level as "grpc
// internal error" with the ref, the full error and the trace id.
type errorMapper struct {
	log         *zap.Logger
	classifiers []fxcore.Classifier
}

func newErrorMapper(log *zap.Logger, classifiers []fxcore.Classifier) *errorMapper {
	if log == nil {
		log = zap.NewNop()
	}
	return &errorMapper{log: log, classifiers: slices.Clone(classifiers)}
}

func (m *errorMapper) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	if err != nil {
		err = m.mapError(ss.Context(), info.FullMethod, err)
	}
	return err
}

// referenced is an internal status that already carries a ref (a
// recovered panic): it is passed through as is.
type referenced struct{ st *status.Status }

func (e *referenced) Error() string              { return e.st.Message() }
func (e *referenced) GRPCStatus() *status.Status { return e.st }

func (m *errorMapper) mapError(ctx context.Context, method string, err error) error {
	if ref := (*referenced)(nil); errors.As(err, &ref) {
		return err
	}
	// A status returned as is wins; then a class anywhere in the chain;
	// then a wrapped status (a downstream call's).
	_, isStatus := err.(interface{ GRPCStatus() *status.Status })
	var cl fxcore.Classified
	if !isStatus && !errors.As(err, &cl) {
		_, isStatus = status.FromError(err)
	}
	if isStatus {
		st := status.Convert(err)
		switch st.Code() {
		case codes.Unknown, codes.Internal, codes.DataLoss:
			return m.internal(ctx, method, st.Code(), err)
		case codes.Unavailable:
			return withRetryInfo(st, fxcore.DefaultRetryAfter).Err()
		}
		return err
	}
	c := fxcore.Classify(err, m.classifiers...)
	if c.Class == fxcore.ClassCanceled && ctx.Err() == nil {
		c = fxcore.Classification{Class: fxcore.ClassUnavailable, Message: fxcore.ClassUnavailable.Message(), RetryAfter: fxcore.DefaultRetryAfter}
	}
	if c.Class.Internal() {
		return m.internal(ctx, method, codes.Internal, err)
	}
	st := status.New(ClassCode(c.Class), c.Message)
	if c.Class == fxcore.ClassUnavailable {
		st = withRetryInfo(st, c.RetryAfter)
	}
	return st.Err()
}

// internal logs err under a new ref and returns the status with code and
// the message "internal error (ref <ref>)".
func (m *errorMapper) internal(ctx context.Context, method string, code codes.Code, err error) error {
	ref := newRef()
	fields := []zap.Field{zap.String("grpc.method", method), zap.String("grpc.code", code.String()),
		zap.String("ref", ref), zap.Error(err)}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
	}
	m.log.Error("grpc internal error", fields...)
	return status.Error(code, internalMessage(ref))
}

func internalMessage(ref string) string { return "internal error (ref " + ref + ")" }

// newRef returns a random reference for an internal error: 16 hex digits.
func newRef() string {
	var b [8]byte
	u := rand.Uint64()
	for i := range b {
		b[i] = byte(u >> (8 * i))
	}
	return hex.EncodeToString(b[:])
}

// withRetryInfo adds a google.rpc.RetryInfo detail with the delay, unless
// the status has one.
func withRetryInfo(st *status.Status, d time.Duration) *status.Status {
	for _, det := range st.Details() {
		if _, ok := det.(*errdetails.RetryInfo); ok {
			return st
		}
	}
	if d <= 0 {
		d = fxcore.DefaultRetryAfter
	}
	if with, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(d)}); err == nil {
		return with
	}
	return st
}

// ClassCode maps an error class to its gRPC code: ClassInvalid is
// InvalidArgument, ClassUnknown and ClassInternal are Internal, and every
// other class the code of the same name.
func ClassCode(c fxcore.ErrorClass) codes.Code {
	switch c {
	case fxcore.ClassInvalid:
		return codes.InvalidArgument
	case fxcore.ClassNotFound:
		return codes.NotFound
	case fxcore.ClassAlreadyExists:
		return codes.AlreadyExists
	case fxcore.ClassFailedPrecondition:
		return codes.FailedPrecondition
	case fxcore.ClassAborted:
		return codes.Aborted
	case fxcore.ClassUnavailable:
		return codes.Unavailable
	case fxcore.ClassResourceExhausted:
		return codes.ResourceExhausted
	case fxcore.ClassDeadlineExceeded:
		return codes.DeadlineExceeded
	case fxcore.ClassCanceled:
		return codes.Canceled
	case fxcore.ClassPermissionDenied:
		return codes.PermissionDenied
	case fxcore.ClassUnauthenticated:
		return codes.Unauthenticated
	case fxcore.ClassUnimplemented:
		return codes.Unimplemented
	}
	return codes.Internal
}

// ---- logging ----

// callLogger writes one line per finished call. It is built to cost nothing
// when the level is disabled and one zap entry when enabled: no start line,
// no per-call field extraction beyond what is written.
type callLogger struct {
	log                      *zap.Logger
	ok, clientErr, serverErr zapcore.Level
	okOn, clientOn, serverOn bool
}

func newCallLogger(log *zap.Logger, cfg Config) *callLogger {
	l := &callLogger{log: log.WithOptions(zap.WithCaller(false))}
	l.ok, l.okOn = level(cfg.LogOKLevel)
	l.clientErr, l.clientOn = level(cfg.LogClientErrorLevel)
	l.serverErr, l.serverOn = level(cfg.LogServerErrorLevel)
	return l
}

func (l *callLogger) base() *zap.Logger {
	if l == nil {
		return zap.NewNop()
	}
	return l.log
}

func (l *callLogger) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	err := handler(srv, ss)
	l.finished(ss.Context(), info.FullMethod, start, err, "")
	return err
}

// subjectKey holds the *string SetSubject fills in, for the call's line.
type subjectKey struct{}

// SetSubject names the authenticated caller of the call ctx belongs to,
// for the call's log line ("subject"); an AuthFunc calls it. Outside a
// call served with an AuthFunc it does nothing.
func SetSubject(ctx context.Context, subject string) {
	if p, ok := ctx.Value(subjectKey{}).(*string); ok {
		*p = subject
	}
}

func (l *callLogger) streamSubject(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	var subject string
	err := handler(srv, &ctxStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), subjectKey{}, &subject)})
	l.finished(ss.Context(), info.FullMethod, start, err, subject)
	return err
}

func (l *callLogger) finished(ctx context.Context, method string, start time.Time, err error, subject string) {
	code := codes.OK
	if err != nil {
		code = status.Code(err)
	}
	l.finishedCode(ctx, method, start, code, err, subject)
}

// finishedCode writes the call's line, err's code already known.
func (l *callLogger) finishedCode(ctx context.Context, method string, start time.Time, code codes.Code, err error, subject string) {
	var lvl zapcore.Level
	switch {
	case code == codes.OK:
		if !l.okOn {
			return
		}
		lvl = l.ok
	case isClientError(code):
		if !l.clientOn {
			return
		}
		lvl = l.clientErr
	default:
		if !l.serverOn {
			return
		}
		lvl = l.serverErr
	}
	ce := l.log.Check(lvl, "grpc call")
	if ce == nil {
		return
	}
	pooled := fieldsPool.Get().(*[]zap.Field)
	fields := append((*pooled)[:0],
		zap.String("grpc.method", method),
		zap.String("grpc.code", code.String()),
		zap.Duration("duration", time.Since(start)),
	)
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		fields = append(fields, zap.String("peer", peerString(p.Addr)))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
	}
	if subject != "" {
		fields = append(fields, zap.String("subject", subject))
	}
	if err != nil {
		fields = append(fields, zap.String("error", status.Convert(err).Message()))
	}
	ce.Write(fields...) // cores encode the fields in Write and keep none
	clear(fields)
	*pooled = fields[:0]
	fieldsPool.Put(pooled)
}

// fieldsPool recycles the call log's field slices.
var fieldsPool = sync.Pool{New: func() any { s := make([]zap.Field, 0, 6); return &s }}

// peers caches the text of connections' remote addresses (one net.Addr per
// connection), so a call's log line does not format it again; it is
// emptied when it holds maxPeers, which bounds it on servers with many
// short connections.
var (
	peers     sync.Map // net.Addr -> string
	peerCount atomic.Int32
)

const maxPeers = 4096

func peerString(a net.Addr) string {
	switch a.(type) {
	case *net.TCPAddr, *net.UnixAddr: // pointers: usable as keys, one per connection
	default:
		return a.String() // another listener's address type may not be comparable
	}
	if s, ok := peers.Load(a); ok {
		return s.(string)
	}
	s := a.String()
	if peerCount.Add(1) > maxPeers {
		peers.Clear()
		peerCount.Store(0)
	}
	peers.Store(a, s)
	return s
}

// isClientError reports the codes that say the caller got something wrong.
func isClientError(c codes.Code) bool {
	switch c {
	case codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition,
		codes.OutOfRange, codes.Aborted, codes.ResourceExhausted:
		return true
	}
	return false
}

// ---- auth ----

// skipAuth is true for the health and reflection services, which probes and
// tools call without credentials.
func skipAuth(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

func authError(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unauthenticated, err.Error())
}

func authUnary(auth AuthFunc) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if skipAuth(info.FullMethod) {
			return handler(ctx, req)
		}
		ctx, err := auth(ctx, info.FullMethod)
		if err != nil {
			return nil, authError(err)
		}
		return handler(ctx, req)
	}
}

func authStream(auth AuthFunc) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if skipAuth(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx, err := auth(ss.Context(), info.FullMethod)
		if err != nil {
			return authError(err)
		}
		return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx})
	}
}

// ctxStream is a server stream with another context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// ---- validation ----

type validatorAll interface{ ValidateAll() error }
type validator interface{ Validate() error }

// MessageValidator checks a request message that has no Validate method of
// its own, against rules it knows (fxgrpc/bufvalidate checks buf.validate
// rules with protovalidate). It returns nil, or the status error to send:
// InvalidArgument for the caller's mistakes.
type MessageValidator interface {
	ValidateMessage(msg proto.Message) error
}

// validation runs the message's own validation (protoc-gen-validate style,
// or any hand-written Validate method), or else the MessageValidator's, and
// turns a failure into InvalidArgument with a google.rpc.BadRequest listing
// the violations.
type validation struct {
	mv MessageValidator // nil: messages without a Validate method pass
}

func (v *validation) validate(msg any) error {
	var err error
	switch m := msg.(type) {
	case validatorAll:
		err = m.ValidateAll()
	case validator:
		err = m.Validate()
	case proto.Message:
		if v.mv == nil {
			return nil
		}
		return v.mv.ValidateMessage(m)
	default:
		return nil
	}
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return st.Err()
	}
	return InvalidArgument(err)
}

// InvalidArgument returns an InvalidArgument status for a validation error,
// with each violation in a google.rpc.BadRequest detail. Errors with
// Field() and Reason() methods (protoc-gen-validate) give the field;
// multi-errors (AllErrors() or errors.Join) give one violation each.
func InvalidArgument(err error) error {
	br := &errdetails.BadRequest{}
	for _, e := range flattenErrors(err) {
		v := &errdetails.BadRequest_FieldViolation{Description: e.Error()}
		if fe, ok := e.(interface {
			Field() string
			Reason() string
		}); ok {
			v.Field, v.Description = fe.Field(), fe.Reason()
		}
		br.FieldViolations = append(br.FieldViolations, v)
	}
	st := status.New(codes.InvalidArgument, fmt.Sprintf("invalid request: %v", err))
	if withDetails, derr := st.WithDetails(br); derr == nil {
		st = withDetails
	}
	return st.Err()
}

func flattenErrors(err error) []error {
	if m, ok := err.(interface{ AllErrors() []error }); ok {
		return m.AllErrors()
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		return joined.Unwrap()
	}
	return []error{err}
}

func (v *validation) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := v.validate(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (v *validation) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, validatingStream{ss, v})
}

// validatingStream validates every message the client sends.
type validatingStream struct {
	grpc.ServerStream
	v *validation
}

func (s validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.v.validate(m)
}
