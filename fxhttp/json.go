package fxhttp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
)

// DefaultMaxBodyBytes bounds DecodeJSON on requests that did not come
// through an fxhttp server (which applies Config.MaxBodyBytes itself).
const DefaultMaxBodyBytes = 4 << 20

// DecodeError is the error DecodeJSON returns for a bad request body. It
// maps itself to its status in WriteError and StatusOf.
type DecodeError struct {
	// Status is 400 (malformed), 413 (too large) or 415 (not JSON).
	Status int
	// Reason says what is wrong, for the client.
	Reason string
	// Err is the underlying error, if any.
	Err error
}

// Error says the body could not be decoded, and why.
func (e *DecodeError) Error() string { return "fxhttp: decode JSON body: " + e.Reason }

// HTTPStatus returns Status.
func (e *DecodeError) HTTPStatus() int { return e.Status }

// Detail returns Reason: what WriteError shows the client.
func (e *DecodeError) Detail() string { return e.Reason }

// Unwrap returns Err.
func (e *DecodeError) Unwrap() error { return e.Err }

// DecodeJSON decodes the request body into dst strictly: exactly one JSON
// value, no unknown fields, no trailing data, a JSON content type (or none),
// within the body limit (the server's MaxBodyBytes, DefaultMaxBodyBytes
// outside an fxhttp server; a body past it is 413 whether its length was
// declared or it came chunked). It writes nothing: on failure it returns a
// *DecodeError (400, 413 or 415 with the reason) that WriteError answers:
//
//	var in CreateOrder
//	if err := fxhttp.DecodeJSON(w, r, &in); err != nil {
//		fxhttp.WriteError(w, r, err)
//		return
//	}
//
// A dst that is not a non-nil pointer is a programming error, returned as a
// plain error (500).
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &DecodeError{Status: http.StatusUnsupportedMediaType, Reason: fmt.Sprintf("Content-Type %q is not JSON; send application/json", ct)}
		}
	}
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	if infoFrom(r.Context()) == nil {
		// Outside an fxhttp server: the same limit for a declared length
		// and a chunked body.
		if r.ContentLength > DefaultMaxBodyBytes {
			return decodeError(&http.MaxBytesError{Limit: DefaultMaxBodyBytes})
		}
		body = http.MaxBytesReader(w, body, DefaultMaxBodyBytes)
	}
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return decodeError(err)
			}
		}
		return &DecodeError{Status: http.StatusBadRequest, Reason: "body must hold a single JSON value; found trailing data", Err: err}
	}
	return nil
}

func decodeError(err error) error {
	var (
		syntax    *json.SyntaxError
		typ       *json.UnmarshalTypeError
		tooLarge  *http.MaxBytesError
		badTarget *json.InvalidUnmarshalError
	)
	bad := func(reason string) error {
		return &DecodeError{Status: http.StatusBadRequest, Reason: reason, Err: err}
	}
	switch {
	case errors.As(err, &badTarget):
		return fmt.Errorf("fxhttp: DecodeJSON: %w", err)
	case errors.As(err, &tooLarge):
		return &DecodeError{Status: http.StatusRequestEntityTooLarge, Reason: fmt.Sprintf("body is larger than %d bytes", tooLarge.Limit), Err: err}
	case errors.As(err, &syntax):
		return bad(fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: ")))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return bad("malformed JSON: the body ends in the middle of a value")
	case errors.Is(err, io.EOF):
		return bad("body must not be empty")
	case errors.As(err, &typ):
		if typ.Field != "" {
			return bad(fmt.Sprintf("field %q must be %s, not JSON %s", typ.Field, kindOf(typ), typ.Value))
		}
		return bad(fmt.Sprintf("body must be %s, not JSON %s", kindOf(typ), typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return bad("unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return bad("read body: " + strings.TrimPrefix(err.Error(), "json: "))
	}
}

func kindOf(e *json.UnmarshalTypeError) string {
	if e.Type == nil {
		return "another type"
	}
	return "a " + e.Type.String()
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// WriteJSON writes v as JSON with the status and Content-Type
// application/json. When v cannot be encoded it answers 500 instead.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		writeProblem(w, http.StatusInternalServerError, "", "", "")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Problem is an RFC 9457 problem details body (application/problem+json).
type Problem struct {
	// Type is a URI for the problem type; "about:blank" means the status says it all.
	Type string `json:"type"`
	// Title is the status text.
	Title string `json:"title"`
	// Status is the HTTP status.
	Status int `json:"status"`
	// Detail explains this occurrence.
	Detail string `json:"detail,omitempty"`
	// Instance is the request path.
	Instance string `json:"instance,omitempty"`
	// RequestID is the request's X-Request-Id (an extension member).
	RequestID string `json:"request_id,omitempty"`
}

// WriteProblem answers with an RFC 9457 problem details body: type
// about:blank, the status and its text as title, detail, the request path as
// instance and the request id.
func WriteProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	var path, id string
	if r != nil {
		if r.URL != nil {
			path = r.URL.Path
		}
		id = RequestID(r.Context())
	}
	writeProblem(w, status, detail, path, id)
}

func writeProblem(w http.ResponseWriter, status int, detail, path, id string) {
	title := http.StatusText(status)
	if status == StatusClientClosedRequest {
		title = "Client Closed Request"
	}
	if title == "" {
		title = fmt.Sprintf("Status %d", status)
	}
	b, _ := json.Marshal(Problem{Type: "about:blank", Title: title, Status: status, Detail: detail, Instance: path, RequestID: id})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
