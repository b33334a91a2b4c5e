package fxauth_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
)

// TestSubjectOnSpans: the server spans of a gRPC call and an HTTP request
// carry the verified subject (enduser.id), and no attribute holds the
// token.
func TestSubjectOnSpans(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	is := newIssuer(t)
	a := startApp(t, issuerEnv(is), fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))))
	tok := is.token(nil)

	_, _, err := a.call(t, tok, "Echo", "")
	require.NoError(t, err)
	res, _ := a.get(t, tok, "/v1/me")
	require.Equal(t, http.StatusOK, res.StatusCode)

	found := map[string]bool{}
	require.Eventually(t, func() bool {
		for _, s := range rec.Ended() {
			for _, kv := range s.Attributes() {
				require.NotContains(t, kv.Value.String(), tok[:40], "span %s carries the token", s.Name())
				if kv.Key == attribute.Key("enduser.id") && kv.Value.AsString() == "alice" {
					found[s.Name()] = true
				}
			}
		}
		return found["test.Echo/Echo"] && found["GET /v1/me"]
	}, 5*1e9, 1e7, "spans with enduser.id: %v", found)
}
