package fxgrpc

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// gatewayMuxOptions are the gateway mux's error handlers (see
// gatewayErrors) and the annotator naming the route (routeLabel).
func gatewayMuxOptions(s *Server) []runtime.ServeMuxOption {
	g := gatewayErrors{log: s.log}
	return []runtime.ServeMuxOption{
		runtime.WithErrorHandler(g.handle),
		runtime.WithStreamErrorHandler(g.stream),
		runtime.WithMetadata(routeLabel),
		runtime.WithRoutingErrorHandler(unmatched),
	}
}

// gatewayErrors answers the REST calls that fail with grpc-gateway's
// google.rpc.Status JSON body and the status's HTTP code, after three
// corrections, because the gateway's own gRPC client connection to this
// process can fail too and its texts name addresses:
//
//   - CANCELLED while the HTTP request is still alive is not the client's
//     doing (499) but the server's ("grpc: the client connection is
//     closing" during a stop): UNAVAILABLE;
//   - UNAVAILABLE without a RetryInfo detail did not come from the server
//     (which adds one to every UNAVAILABLE): the connection failed, so the
//     message becomes the generic one;
//   - UNKNOWN, INTERNAL and DATA_LOSS that are not the server's "internal
//     error (ref <id>)" become "internal error (ref <request id>)", logged
//     with the full error.
//
// Every 503 carries Retry-After (from the RetryInfo, else one second), a
// 429 with a RetryInfo too; a 401 or 403 carries the www-authenticate
// header metadata the server sent as WWW-Authenticate.
type gatewayErrors struct {
	log *zap.Logger
}

func (g gatewayErrors) handle(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var routing *runtime.HTTPStatusError
	if errors.As(err, &routing) {
		// A malformed path: the gateway's own answer, labelled unmatched
		// like its 404 and 405.
		fxhttp.SetRoute(r.Context(), "")
		runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
		return
	}
	st := g.fix(r.Context(), fxhttp.RequestID(r.Context()), err)
	switch st.Code() {
	case codes.Unavailable:
		w.Header().Set("Retry-After", fxhttp.RetryAfterSeconds(retryDelay(st)))
	case codes.ResourceExhausted:
		if d := retryDelay(st); d > 0 {
			w.Header().Set("Retry-After", fxhttp.RetryAfterSeconds(d))
		}
	case codes.Unauthenticated, codes.PermissionDenied:
		// An AuthFunc's challenge (RFC 6750), sent as header metadata,
		// replaces the status message grpc-gateway puts there.
		if md, ok := runtime.ServerMetadataFromContext(ctx); ok {
			if v := md.HeaderMD.Get("www-authenticate"); len(v) > 0 {
				w = &challengeWriter{ResponseWriter: w, challenge: v[0]}
			}
		}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, st.Err())
}

// unmatched answers a request no gateway route matches (404, 405) as
// grpc-gateway does, labelled "unmatched" like fxhttp's own 404 and 405.
func unmatched(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
	fxhttp.SetRoute(r.Context(), "")
	runtime.DefaultRoutingErrorHandler(ctx, mux, m, w, r, code)
}

// stream fixes an error that ends a server stream (written in the body:
// the status line is already sent).
func (g gatewayErrors) stream(ctx context.Context, err error) *status.Status {
	return g.fix(ctx, fxhttp.RequestID(ctx), err)
}

// fix applies the corrections to err's status; alive is the HTTP
// request's context, ref the request id.
func (g gatewayErrors) fix(alive context.Context, ref string, err error) *status.Status {
	st := status.Convert(err)
	switch st.Code() {
	case codes.Canceled:
		if alive.Err() == nil {
			return unavailable()
		}
	case codes.Unavailable:
		if retryDelay(st) == 0 {
			return unavailable()
		}
	case codes.Unknown, codes.Internal, codes.DataLoss:
		if !strings.HasPrefix(st.Message(), "internal error") {
			fields := []zap.Field{zap.String("grpc.code", st.Code().String()), zap.String("ref", ref),
				zap.String("request_id", ref), zap.Error(err)}
			if sc := trace.SpanContextFromContext(alive); sc.HasTraceID() {
				fields = append(fields, zap.String("trace_id", sc.TraceID().String()))
			}
			g.log.Error("grpc gateway internal error", fields...)
			msg := "internal error"
			if ref != "" {
				msg = internalMessage(ref)
			}
			return status.New(codes.Internal, msg)
		}
	}
	return st
}

func unavailable() *status.Status {
	return withRetryInfo(status.New(codes.Unavailable, fxcore.ClassUnavailable.Message()), fxcore.DefaultRetryAfter)
}

// retryDelay is the status's RetryInfo delay, 0 without one.
func retryDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return max(ri.GetRetryDelay().AsDuration(), time.Millisecond)
		}
	}
	return 0
}

// challengeWriter sets WWW-Authenticate as the status line is written.
type challengeWriter struct {
	http.ResponseWriter
	challenge string
}

func (c *challengeWriter) WriteHeader(code int) {
	c.Header().Set("WWW-Authenticate", c.challenge)
	c.ResponseWriter.WriteHeader(code)
}

func (c *challengeWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
