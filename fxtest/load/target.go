package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/martyfx/martyfx/fxtest"
)

// Target is what the driver runs: one operation, repeated.
type Target struct {
	// Name labels the target in reports and charts.
	Name string
	// Do runs one operation; a non-nil error counts it as failed, under the
	// class ErrorClass (or the Classify option) gives it.
	Do func(ctx context.Context) error
}

// Func is a target that calls fn.
func Func(name string, fn func(ctx context.Context) error) Target {
	return Target{Name: name, Do: fn}
}

// StatusError is an HTTP target's error for a response with status 400 or
// above; its class is "HTTP <code>".
type StatusError struct {
	Code int
}

func (e *StatusError) Error() string {
	return "load: HTTP status " + strconv.Itoa(e.Code) + " " + http.StatusText(e.Code)
}

// HTTP is a target that sends method path to the app's public server
// through its client (app.HTTP()), with body encoded once as JSON ([]byte,
// string and json.RawMessage are sent as they are; nil sends none). Each
// response body is read to the end; a status of 400 or above fails the
// operation with a *StatusError.
//
//	load.HTTP(app.HTTP(), http.MethodPost, "/v1/orders", order)
func HTTP(c *fxtest.HTTPClient, method, path string, body any) Target {
	name := method + " " + path
	var raw []byte
	var encErr error
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	case json.RawMessage:
		raw = b
	default:
		raw, encErr = json.Marshal(body)
		if encErr != nil {
			encErr = fmt.Errorf("load: %s: encode the body %T: %w", name, body, encErr)
		}
	}
	url := c.URL(path)
	return HTTPRequest(name, c.Client, func(ctx context.Context) (*http.Request, error) {
		if encErr != nil {
			return nil, encErr
		}
		var rd io.Reader
		if raw != nil {
			rd = bytes.NewReader(raw)
		}
		req, err := http.NewRequestWithContext(ctx, method, url, rd)
		if err != nil {
			return nil, fmt.Errorf("load: %s: %w", name, err)
		}
		if raw != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		return req, nil
	})
}

// HTTPRequest is a target that sends the request newRequest builds for each
// operation (with ctx) through client, reads the response body to the end,
// and fails the operation with a *StatusError for a status of 400 or above.
func HTTPRequest(name string, client *http.Client, newRequest func(ctx context.Context) (*http.Request, error)) Target {
	return Target{Name: name, Do: func(ctx context.Context) error {
		req, err := newRequest(ctx)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= http.StatusBadRequest {
			return &StatusError{Code: resp.StatusCode}
		}
		return err
	}}
}

// GRPC is a target that invokes the unary method ("/pkg.Service/Method")
// with req through conn, usually the app's own client connection
// (app.GRPC()), decoding each response into a new message of reply's type.
// A failed call counts under its status code ("gRPC Unavailable").
func GRPC(conn grpc.ClientConnInterface, method string, req, reply proto.Message) Target {
	return Target{Name: method, Do: func(ctx context.Context) error {
		return conn.Invoke(ctx, method, req, reply.ProtoReflect().New().Interface())
	}}
}

// ErrorClass is the class a failed operation is counted under: "HTTP 503"
// for a *StatusError, "gRPC Unavailable" for an error carrying a gRPC
// status, "deadline exceeded" and "canceled" for context errors, "error"
// otherwise (the report shows the first message of each class).
func ErrorClass(err error) string {
	var se *StatusError
	if errors.As(err, &se) {
		return "HTTP " + strconv.Itoa(se.Code)
	}
	if s, ok := status.FromError(err); ok {
		return "gRPC " + s.Code().String()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline exceeded"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}
