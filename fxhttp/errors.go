package fxhttp

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/martyfx/martyfx/fxcore"
)

// ErrorStatus maps an error to an HTTP status; ok is false when it does not
// know the error. Register one with AsErrorStatus.
type ErrorStatus func(err error) (status int, ok bool)

// StatusClientClosedRequest is the status recorded when the client went
// away before the handler finished (context.Canceled); nginx's 499.
const StatusClientClosedRequest = 499

// StatusOf returns the HTTP status for err, in this order: an error in the
// chain with an HTTPStatus() int method; the ErrorStatus hooks of the server
// serving ctx's request (AsErrorStatus); *http.MaxBytesError is 413; then
// the error's fxcore class (fxcore.Classify with the server's classifiers,
// AsClassifier; fxrepo registers one for database errors), mapped by
// ClassStatus: 400, 404, 409, 503 ... An unclassified error is 500. A
// context.Canceled is 499 only when ctx (the request's) is done: the
// client went away; a cancellation the server made is 503. A nil err is
// 200.
func StatusOf(ctx context.Context, err error) int {
	status, _ := statusOf(ctx, err)
	return status
}

// statusOf is StatusOf with the error's classification (nil when the
// status did not come from it).
func statusOf(ctx context.Context, err error) (int, *fxcore.Classification) {
	if err == nil {
		return http.StatusOK, nil
	}
	var self interface{ HTTPStatus() int }
	if errors.As(err, &self) {
		if s := self.HTTPStatus(); s >= 100 && s <= 999 {
			return s, nil
		}
	}
	info := infoFrom(ctx)
	if info != nil {
		for _, m := range info.mappers {
			if s, ok := m(err); ok && s >= 100 && s <= 999 {
				return s, nil
			}
		}
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return http.StatusRequestEntityTooLarge, nil
	}
	var cs []fxcore.Classifier
	if info != nil {
		cs = info.classifiers
	}
	c := fxcore.Classify(err, cs...)
	if c.Class == fxcore.ClassCanceled && ctx.Err() == nil {
		// Nobody cancelled the request: a server-side cancellation (a
		// pool or connection closing) is a temporary unavailability.
		c = fxcore.Classification{Class: fxcore.ClassUnavailable, Message: fxcore.ClassUnavailable.Message(), RetryAfter: fxcore.DefaultRetryAfter}
	}
	return ClassStatus(c.Class), &c
}

// ClassStatus maps an error class to its HTTP status (the mapping
// grpc-gateway uses for the matching gRPC codes): invalid and failed
// precondition 400, unauthenticated 401, permission denied 403, not found
// 404, already exists and aborted 409, resource exhausted 429, canceled
// 499, unimplemented 501, unavailable 503, deadline exceeded 504, unknown
// and internal 500.
func ClassStatus(c fxcore.ErrorClass) int {
	switch c {
	case fxcore.ClassInvalid, fxcore.ClassFailedPrecondition:
		return http.StatusBadRequest
	case fxcore.ClassUnauthenticated:
		return http.StatusUnauthorized
	case fxcore.ClassPermissionDenied:
		return http.StatusForbidden
	case fxcore.ClassNotFound:
		return http.StatusNotFound
	case fxcore.ClassAlreadyExists, fxcore.ClassAborted:
		return http.StatusConflict
	case fxcore.ClassResourceExhausted:
		return http.StatusTooManyRequests
	case fxcore.ClassCanceled:
		return StatusClientClosedRequest
	case fxcore.ClassUnimplemented:
		return http.StatusNotImplemented
	case fxcore.ClassUnavailable:
		return http.StatusServiceUnavailable
	case fxcore.ClassDeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// WriteError answers the request with the problem details for err and the
// status from StatusOf. The detail is what the client may read:
//
//   - a classified error (fxcore.Classified, or known to a classifier such
//     as fxrepo's) shows its public message, never the driver's text:
//     "Order 42 not found", "the database is unavailable; retry later";
//     a 503 also gets Retry-After (seconds);
//   - an error mapped by its HTTPStatus() method or an AsErrorStatus hook
//     to a status below 500 shows its Detail() string, or else its text;
//   - any other 5xx shows "internal error (ref <request id>)": the error
//     is recorded on the request's span and in its access log line (with
//     the request id and the trace id; logged at error level when the
//     access log is off), never sent to the client.
//
// A nil err is a bug in the caller and answers 500.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if err == nil {
		err = errors.New("fxhttp: WriteError called with a nil error")
	}
	status, c := statusOf(ctx, err)
	var detail string
	var d interface{ Detail() string }
	switch {
	case c != nil && !c.Class.Internal():
		detail = c.Message
	case status < 500 && errors.As(err, &d):
		detail = d.Detail()
	case status < 500:
		detail = err.Error()
	default:
		detail = "internal error"
		if id := RequestID(ctx); id != "" {
			detail += " (ref " + id + ")"
		}
	}
	if status == http.StatusServiceUnavailable {
		wait := fxcore.DefaultRetryAfter
		if c != nil && c.RetryAfter > 0 {
			wait = c.RetryAfter
		}
		w.Header().Set("Retry-After", RetryAfterSeconds(wait))
	}
	if status >= 500 {
		if info := infoFrom(ctx); info != nil {
			info.err = err
		}
		span := trace.SpanFromContext(ctx)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	WriteProblem(w, r, status, detail)
}

// RetryAfterSeconds formats a wait as a Retry-After value: whole seconds,
// rounded up, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	secs := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(secs, 1), 10)
}

// requestInfo is what the server's middleware puts in each request's context.
type requestInfo struct {
	id          string
	mappers     []ErrorStatus
	classifiers []fxcore.Classifier
	err         error  // the 5xx error WriteError answered, for the access log
	pattern     string // the pattern the server's ServeMux matched
	route       string // the route a handler set (SetRoute)
	routeSet    bool
	subject     string // the authenticated caller (SetSubject)
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// SetRoute names the route of the request ctx belongs to, for a handler
// that routes by itself (a router mounted on one pattern, such as fxgrpc's
// REST gateway): the request's metrics, span name, http.route attribute and
// access log line then show route instead of the pattern it is mounted at.
// route is a template such as "/v1/orders/{id}", from a fixed set (each
// route is a metric series), never the request's path; "" says that no
// route matched (the "unmatched" label of 404 and 405 answers). Call it
// from the handler's goroutine, before the handler returns. Outside a
// request served by fxhttp it does nothing.
func SetRoute(ctx context.Context, route string) {
	if info := infoFrom(ctx); info != nil {
		info.route, info.routeSet = route, true
	}
}

// SetSubject names the authenticated caller of the request ctx belongs
// to, for its access log line ("subject"); authentication middleware
// calls it. Outside a request served by fxhttp it does nothing.
func SetSubject(ctx context.Context, subject string) {
	if info := infoFrom(ctx); info != nil {
		info.subject = subject
	}
}

// RequestID returns the id of the request ctx belongs to (the X-Request-Id
// the client sent, or the one the server generated), "" outside a request
// served by fxhttp.
func RequestID(ctx context.Context) string {
	if info := infoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}
