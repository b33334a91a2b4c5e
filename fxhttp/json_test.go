package fxhttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
)

type createOrder struct {
	Item     string `json:"item"`
	Quantity int    `json:"quantity"`
}

func decodeRoute() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in createOrder
		if err := DecodeJSON(w, r, &in); err != nil {
			WriteError(w, r, err)
			return
		}
		WriteJSON(w, http.StatusCreated, in)
	})
}

func TestDecodeJSONStrictOverTCP(t *testing.T) {
	t.Parallel()
	h := start(t, nil, AsRoute("POST /v1/orders", decodeRoute))
	post := func(body string, hdr ...string) (reply, string) {
		return h.do(http.MethodPost, h.url("/v1/orders"), strings.NewReader(body), hdr...)
	}
	resp, body := post(`{"item":"book","quantity":2}`, "Content-Type", "application/json; charset=utf-8")
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.JSONEq(t, `{"item":"book","quantity":2}`, body)

	for _, c := range []struct{ body, reason string }{
		{`{"item":"book","color":"red"}`, `unknown field "color"`},
		{`{"item":"book"} {"item":"pen"}`, "body must hold a single JSON value; found trailing data"},
		{`{"item":"book"}]`, "body must hold a single JSON value; found trailing data"},
		{`{"item":"book",}`, "malformed JSON at byte 16: invalid character '}' looking for beginning of object key string"},
		{`{"item":"bo`, "malformed JSON: the body ends in the middle of a value"},
		{`{"quantity":"two"}`, `field "quantity" must be a int, not JSON string`},
		{`[1,2]`, "body must be a fxhttp.createOrder, not JSON array"},
		{``, "body must not be empty"},
	} {
		resp, body := post(c.body)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, c.body)
		require.Equal(t, c.reason, problemOf(t, resp, body).Detail, c.body)
	}
	resp, body = post(`item=book`, "Content-Type", "application/x-www-form-urlencoded")
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	require.Contains(t, problemOf(t, resp, body).Detail, "is not JSON")
	resp, _ = post(`{"item":"x"}`, "Content-Type", "application/merge-patch+json")
	require.Equal(t, http.StatusCreated, resp.StatusCode, "+json types are JSON")
}

func TestDecodeJSONOutsideTheServerHasADefaultLimit(t *testing.T) {
	t.Parallel()
	big := `{"item":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(big))
	w := httptest.NewRecorder()
	var in createOrder
	err := DecodeJSON(w, r, &in)
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, http.StatusRequestEntityTooLarge, de.Status)

	err = DecodeJSON(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{}`)), in)
	require.ErrorContains(t, err, "fxhttp: DecodeJSON: json: Unmarshal(non-pointer")
	require.Equal(t, http.StatusInternalServerError, StatusOf(r.Context(), err))
}

// Outside an fxhttp server too, a body past DefaultMaxBodyBytes is 413
// whether it declares its length (refused unread) or comes chunked.
func TestDecodeJSONOutsideTheServerChunkedAndDeclaredAre413(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(decodeRoute())
	defer srv.Close()
	big := `{"item":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(body)
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL, body)
		require.NoError(t, err)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "chunked=%v", chunked)
		require.Equal(t, fmt.Sprintf("body is larger than %d bytes", DefaultMaxBodyBytes), problemOf(t, replyOf(resp), string(b)).Detail)
	}

	// A declared length past the limit is refused before the body is read.
	r := httptest.NewRequest(http.MethodPost, "/", errReader{})
	r.ContentLength = DefaultMaxBodyBytes + 1
	var in createOrder
	err := DecodeJSON(httptest.NewRecorder(), r, &in)
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, http.StatusRequestEntityTooLarge, de.Status)
}

// errReader fails the test's request if anything reads it.
type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("read the body") }

// Inside the server, DecodeJSON's 413 holds for both kinds of body.
func TestDecodeJSONChunkedAndDeclaredAre413(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_HTTP_MAX_BODY_BYTES=64"}, AsRoute("POST /v1/orders", decodeRoute))
	big := `{"item":"` + strings.Repeat("x", 100) + `"}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(body)
		}
		resp, b := h.do(http.MethodPost, h.url("/v1/orders"), body)
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "chunked=%v", chunked)
		require.Equal(t, "body is larger than 64 bytes", problemOf(t, resp, b).Detail)
	}
}

type teapotError struct{}

func (teapotError) Error() string   { return "short and stout" }
func (teapotError) HTTPStatus() int { return http.StatusTeapot }

var (
	errNotFound = errors.New("repo: not found")
	errConflict = errors.New("repo: conflict")
)

func TestWriteErrorMapsThroughHooksAndHTTPStatus(t *testing.T) {
	t.Parallel()
	errs := map[string]error{
		"notfound": fmt.Errorf("get order 7: %w", errNotFound),
		"conflict": errConflict,
		"teapot":   fmt.Errorf("brew: %w", teapotError{}),
		"internal": errors.New("password=hunter2 rejected by db"),
	}
	h := start(t, nil,
		AsErrorStatus(func(log *zap.Logger) ErrorStatus {
			return func(err error) (int, bool) {
				if errors.Is(err, errNotFound) {
					return http.StatusNotFound, true
				}
				return 0, false
			}
		}),
		AsErrorStatus(func(err error) (int, bool) {
			if errors.Is(err, errConflict) {
				return http.StatusConflict, true
			}
			return 0, false
		}),
		AsRoute("GET /err/{kind}", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, errs[r.PathValue("kind")]) })
		}),
	)
	for kind, want := range map[string]struct {
		status int
		detail string
	}{
		"notfound": {404, "get order 7: repo: not found"},
		"conflict": {409, "repo: conflict"},
		"teapot":   {418, "brew: short and stout"},
		"internal": {500, "internal error (ref "},
	} {
		resp, body := h.get("/err/" + kind)
		require.Equal(t, want.status, resp.StatusCode, kind)
		p := problemOf(t, resp, body)
		if want.status == 500 {
			require.Equal(t, want.detail+p.RequestID+")", p.Detail, "the request id is the reference")
		} else {
			require.Equal(t, want.detail, p.Detail, kind)
		}
		require.Equal(t, "/err/"+kind, p.Instance)
		require.Equal(t, resp.Header.Get(RequestIDHeader), p.RequestID)
		require.NotContains(t, body, "hunter2")
	}

	_, err := newApp(t, nil, AsErrorStatus(func() int { return 1 }))
	require.ErrorContains(t, err, "fxhttp.AsErrorStatus")

	// Outside a server, the hooks are unknown but the built-in mappings hold.
	ctx := httptest.NewRequest(http.MethodGet, "/", nil).Context()
	require.Equal(t, 500, StatusOf(ctx, errNotFound))
	require.Equal(t, 413, StatusOf(ctx, fmt.Errorf("x: %w", &http.MaxBytesError{Limit: 1})))
	require.Equal(t, 504, StatusOf(ctx, fmt.Errorf("x: %w", contextDeadline())))
	require.Equal(t, 200, StatusOf(ctx, nil))
}

func TestWriteErrorNilIs500(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	WriteError(w, httptest.NewRequest(http.MethodGet, "/", nil), nil)
	require.Equal(t, http.StatusInternalServerError, w.Code)
}

func TestWriteJSONUnencodableIs500(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, map[string]any{"f": func() {}})
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	b, _ := io.ReadAll(w.Body)
	require.Contains(t, string(b), `"status":500`)
}

func contextDeadline() error {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	return ctx.Err()
}

// errDBDown stands for a driver error: its text holds what a client must never
// read (host, user, database).
var errDBDown = errors.New("failed to connect to `user=app database=orders`: 10.1.2.3:5432: connection refused")

func TestWriteErrorMapsClasses(t *testing.T) {
	t.Parallel()
	errs := map[string]error{
		"invalid":     fxcore.NewError(fxcore.ClassInvalid, "customer_id must not be empty", nil),
		"notfound":    fmt.Errorf("orders: %w", fxcore.NewError(fxcore.ClassNotFound, "Order 42 not found", errDBDown)),
		"exists":      fxcore.NewError(fxcore.ClassAlreadyExists, "", errDBDown),
		"aborted":     fxcore.NewError(fxcore.ClassAborted, "", errDBDown),
		"unavailable": fmt.Errorf("orders: list: %w", errDBDown), // classified by the registered classifier
		"deadline":    fmt.Errorf("orders: %w", context.DeadlineExceeded),
		"canceled":    fmt.Errorf("pool closing: %w", context.Canceled), // not the client's doing
		"internal":    fxcore.NewError(fxcore.ClassInternal, "leaky message", errDBDown),
		"unknown":     fmt.Errorf("orders: %w", errors.New("10.1.2.3 said no")),
	}
	h := start(t, nil,
		fxcore.AsClassifier(func(err error) (fxcore.ErrorClass, string, bool) {
			if errors.Is(err, errDBDown) {
				return fxcore.ClassUnavailable, "the database is unavailable; retry later", true
			}
			return 0, "", false
		}),
		AsRoute("GET /err/{kind}", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, errs[r.PathValue("kind")]) })
		}),
	)
	for kind, want := range map[string]struct {
		status int
		detail string
	}{
		"invalid":     {400, "customer_id must not be empty"},
		"notfound":    {404, "Order 42 not found"},
		"exists":      {409, fxcore.ClassAlreadyExists.Message()},
		"aborted":     {409, fxcore.ClassAborted.Message()},
		"unavailable": {503, "the database is unavailable; retry later"},
		"deadline":    {504, fxcore.ClassDeadlineExceeded.Message()},
		"canceled":    {503, fxcore.ClassUnavailable.Message()},
		"internal":    {500, "internal error (ref "},
		"unknown":     {500, "internal error (ref "},
	} {
		resp, body := h.get("/err/" + kind)
		require.Equal(t, want.status, resp.StatusCode, kind)
		p := problemOf(t, resp, body)
		require.True(t, strings.HasPrefix(p.Detail, want.detail), "%s: %q", kind, p.Detail)
		require.NotContains(t, body, "10.1.2.3", kind)
		require.NotContains(t, body, "user=app", kind)
		require.NotContains(t, body, "leaky", kind)
		if want.status == 503 {
			require.Equal(t, "1", resp.Header.Get("Retry-After"), kind)
		} else {
			require.Empty(t, resp.Header.Get("Retry-After"), kind)
		}
	}

	// The reference of a 500 finds the access log line with the full error
	// and the trace id.
	resp, body := h.get("/err/unknown")
	ref := problemOf(t, resp, body).RequestID
	var found bool
	for _, l := range h.accessLogs() {
		if l["request_id"] == ref {
			found = true
			require.Equal(t, "orders: 10.1.2.3 said no", l["error"])
			require.NotEmpty(t, l["trace_id"])
		}
	}
	require.True(t, found, "no access log line has the reference %s", ref)
}

func TestInternalErrorLoggedWithoutAccessLog(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_HTTP_ACCESS_LOG=off"},
		AsRoute("GET /boom", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteError(w, r, errors.New("disk on fire")) })
		}))
	resp, body := h.get("/boom")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	ref := problemOf(t, resp, body).RequestID
	require.Empty(t, h.accessLogs())
	lines := h.logs.FilterMessage("http request failed").All()
	require.Len(t, lines, 1)
	f := lines[0].ContextMap()
	require.Equal(t, ref, f["request_id"])
	require.Equal(t, "disk on fire", f["error"])
	require.NotEmpty(t, f["trace_id"])
}

func TestStatusOfCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	require.Equal(t, http.StatusServiceUnavailable, StatusOf(ctx, context.Canceled), "the server cancelled, not the client")
	cancel()
	require.Equal(t, StatusClientClosedRequest, StatusOf(ctx, fmt.Errorf("x: %w", context.Canceled)), "the client went away")
	require.Equal(t, "1", RetryAfterSeconds(0))
	require.Equal(t, "2", RetryAfterSeconds(1500*time.Millisecond))
}
