package fxtracing

import (
	"context"
	"net/http"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TestPropagatorRoundTrip sends a span and baggage through W3C headers, the
// way one service calls the next, and continues the trace on the far side.
func TestPropagatorRoundTrip(t *testing.T) {
	a := startApp(t, nil)
	require.Equal(t, a.prop, otel.GetTextMapPropagator(), "Module sets the global propagator")

	header := http.Header{}
	var sent trace.SpanContext
	require.NoError(t, Run(context.Background(), "client", func(ctx context.Context) error {
		ctx, err := SetBaggage(ctx, "tenant", "acme corp")
		require.NoError(t, err)
		ctx, err = SetBaggage(ctx, "plan", "gold")
		require.NoError(t, err)
		require.Equal(t, "acme corp", Baggage(ctx, "tenant"))
		sent = trace.SpanContextFromContext(ctx)
		otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(header))
		return nil
	}))

	require.Regexp(t, regexp.MustCompile(`^00-`+sent.TraceID().String()+`-`+sent.SpanID().String()+`-01$`), header.Get("traceparent"))
	require.ElementsMatch(t, []string{"tenant=acme%20corp", "plan=gold"}, splitList(header.Get("baggage")))

	// The receiving side.
	ctx := a.prop.Extract(context.Background(), propagation.HeaderCarrier(header))
	got := trace.SpanContextFromContext(ctx)
	require.True(t, got.IsRemote())
	require.Equal(t, sent.TraceID(), got.TraceID())
	require.Equal(t, sent.SpanID(), got.SpanID())
	require.True(t, got.IsSampled())
	require.Equal(t, "acme corp", Baggage(ctx, "tenant"))
	require.Equal(t, "gold", Baggage(ctx, "plan"))
	require.Empty(t, Baggage(ctx, "missing"))

	require.NoError(t, Run(ctx, "server", func(context.Context) error { return nil }))
	server := spanByName(t, a.rec, "server")
	require.Equal(t, sent.TraceID(), server.SpanContext().TraceID())
	require.Equal(t, sent.SpanID(), server.Parent().SpanID())
	require.True(t, server.Parent().IsRemote())

	_, err := SetBaggage(context.Background(), "", "v")
	require.ErrorContains(t, err, `fxtracing: baggage member ""`)
	_, err = SetBaggage(context.Background(), "k", "\xff")
	require.ErrorContains(t, err, `fxtracing: baggage member "k"`)
}

func TestPropagatorsFromEnv(t *testing.T) {
	tests := []struct {
		propagators        string
		want, not          []string
		carriesTrace, bagg bool
	}{
		{"b3", []string{"b3"}, []string{"traceparent", "baggage"}, true, false},
		{"b3multi,baggage", []string{"x-b3-traceid", "x-b3-spanid", "baggage"}, []string{"traceparent"}, true, true},
		{"tracecontext", []string{"traceparent"}, []string{"baggage", "b3"}, true, false},
		{"baggage", []string{"baggage"}, []string{"traceparent", "b3"}, false, true},
		{"none", nil, []string{"traceparent", "baggage", "b3"}, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.propagators, func(t *testing.T) {
			a := startApp(t, []string{"OTEL_PROPAGATORS=" + tc.propagators})
			header := http.Header{}
			var sent trace.SpanContext
			require.NoError(t, Run(context.Background(), "op", func(ctx context.Context) error {
				ctx, err := SetBaggage(ctx, "k", "v")
				require.NoError(t, err)
				sent = trace.SpanContextFromContext(ctx)
				a.prop.Inject(ctx, propagation.HeaderCarrier(header))
				return nil
			}))
			for _, h := range tc.want {
				require.NotEmpty(t, header.Get(h), "header %s in %v", h, header)
			}
			for _, h := range tc.not {
				require.Empty(t, header.Get(h), "header %s in %v", h, header)
			}
			ctx := a.prop.Extract(context.Background(), propagation.HeaderCarrier(header))
			got := trace.SpanContextFromContext(ctx)
			require.Equal(t, tc.carriesTrace, got.IsValid())
			if tc.carriesTrace {
				require.Equal(t, sent.TraceID(), got.TraceID())
				require.Equal(t, sent.SpanID(), got.SpanID())
			}
			require.Equal(t, tc.bagg, Baggage(ctx, "k") == "v")
		})
	}
}

func splitList(v string) []string {
	var out []string
	for _, part := range regexp.MustCompile(`\s*,\s*`).Split(v, -1) {
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}
