package fxtracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/baggage"
)

// SetBaggage returns ctx with the W3C baggage member key=value added (or
// replaced). Baggage travels to downstream services with the propagator
// (OTEL_PROPAGATORS includes baggage by default). The key must not be
// empty; key and value must be valid UTF-8 (the propagator encodes them).
func SetBaggage(ctx context.Context, key, value string) (context.Context, error) {
	m, err := baggage.NewMemberRaw(key, value)
	if err != nil {
		return ctx, fmt.Errorf("fxtracing: baggage member %q: %w", key, err)
	}
	b, err := baggage.FromContext(ctx).SetMember(m)
	if err != nil {
		return ctx, fmt.Errorf("fxtracing: set baggage member %q: %w", key, err)
	}
	return baggage.ContextWithBaggage(ctx, b), nil
}

// Baggage returns the value of the baggage member key in ctx, or "" when
// there is none.
func Baggage(ctx context.Context, key string) string {
	return baggage.FromContext(ctx).Member(key).Value()
}
