package fxgrpc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// answer runs the gateway's error handler for err on a request whose
// context is ctx, and returns the response.
func answer(ctx context.Context, t *testing.T, g gatewayErrors, err error) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	mux := runtime.NewServeMux()
	r := httptest.NewRequest(http.MethodGet, "/v1/orders", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	g.handle(ctx, mux, &runtime.JSONPb{}, w, r, err)
	var body map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body), w.Body.String())
	return w, body
}

func TestGatewayErrorsNeverBlameTheClientForTheServer(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	g := gatewayErrors{log: zap.New(core)}
	alive := context.Background()

	// The gateway's connection closed under a live request: 503, not 499.
	w, body := answer(alive, t, g, status.Error(codes.Canceled, "grpc: the client connection is closing"))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Equal(t, float64(codes.Unavailable), body["code"])
	require.NotContains(t, body["message"], "client connection")

	// The client went away: 499 stays.
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	w, _ = answer(gone, t, g, status.Error(codes.Canceled, "context canceled"))
	require.Equal(t, 499, w.Code)

	// A dial failure names the address: replaced, 503 with Retry-After.
	w, body = answer(alive, t, g, status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:9090: connect: connection refused\""))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	require.NotContains(t, body["message"], "127.0.0.1")

	// The server's UNAVAILABLE keeps its message and its RetryInfo delay.
	st := withRetryInfo(status.New(codes.Unavailable, "orders: stopping; watch again"), 3*time.Second)
	w, body = answer(alive, t, g, st.Err())
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Equal(t, "3", w.Header().Get("Retry-After"))
	require.Equal(t, "orders: stopping; watch again", body["message"])
	require.Len(t, body["details"], 1, "the google.rpc.Status shape, with its RetryInfo")

	// An internal error from the client side is hidden and logged.
	w, body = answer(alive, t, g, status.Error(codes.Internal, "grpc: error unmarshalling response: proto: bad wire type"))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Equal(t, "internal error", body["message"], "no request id outside fxhttp")
	require.Len(t, logs.FilterMessage("grpc gateway internal error").All(), 1)
	// ... but the server's own reference is kept.
	w, body = answer(alive, t, g, status.Error(codes.Internal, "internal error (ref 0123456789abcdef)"))
	require.Equal(t, http.StatusInternalServerError, w.Code)
	require.Equal(t, "internal error (ref 0123456789abcdef)", body["message"])
	require.Len(t, logs.FilterMessage("grpc gateway internal error").All(), 1)

	// Other codes and routing errors are the gateway's defaults.
	w, body = answer(alive, t, g, status.Error(codes.NotFound, "Order 42 not found"))
	require.Equal(t, http.StatusNotFound, w.Code)
	require.Equal(t, "Order 42 not found", body["message"])
	require.Empty(t, w.Header().Get("Retry-After"))
	w, _ = answer(alive, t, g, &runtime.HTTPStatusError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed")})
	require.Equal(t, http.StatusMethodNotAllowed, w.Code)

	// A stream that ends on the closing connection reports UNAVAILABLE.
	require.Equal(t, codes.Unavailable, g.stream(alive, status.Error(codes.Canceled, "grpc: the client connection is closing")).Code())
}
