package fxhttp

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ErrorStatus maps an error to an HTTP status; ok is false when it does not
// know the error. Register one with AsErrorStatus.
type ErrorStatus func(err error) (status int, ok bool)

// StatusClientClosedRequest is the status recorded when the client went
// away before the handler finished (context.Canceled); nginx's 499.
const StatusClientClosedRequest = 499

// StatusOf returns the HTTP status for err, in this order: an error in the
// chain with an HTTPStatus() int method; the ErrorStatus hooks of the server
// serving ctx's request (AsErrorStatus); *http.MaxBytesError is 413,
// context.DeadlineExceeded 504, context.Canceled 499; anything else 500.
// A nil err is 200.
func StatusOf(ctx context.Context, err error) int {
	if err == nil {
		return http.StatusOK
	}
	var self interface{ HTTPStatus() int }
	if errors.As(err, &self) {
		if s := self.HTTPStatus(); s >= 100 && s <= 999 {
			return s
		}
	}
	if info := infoFrom(ctx); info != nil {
		for _, m := range info.mappers {
			if s, ok := m(err); ok && s >= 100 && s <= 999 {
				return s
			}
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, context.Canceled):
		return StatusClientClosedRequest
	}
	return http.StatusInternalServerError
}

// WriteError answers the request with the problem details for err: the
// status from StatusOf and, for statuses below 500, the error's text as the
// detail (its Detail() string method when it has one). A 5xx never shows the
// error's text to the client (it may hold internals); the error is recorded
// on the request's span and in its access log line instead. A nil err is a
// bug in the caller and answers 500.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	if err == nil {
		err = errors.New("fxhttp: WriteError called with a nil error")
	}
	status := StatusOf(ctx, err)
	detail := ""
	if status < 500 {
		detail = err.Error()
		var d interface{ Detail() string }
		if errors.As(err, &d) {
			detail = d.Detail()
		}
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

// requestInfo is what the server's middleware puts in each request's context.
type requestInfo struct {
	id      string
	mappers []ErrorStatus
	err     error // the 5xx error WriteError answered, for the access log
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
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
