package fxevents

import "context"

type observerKey struct{}

// WithEnvelopeObserver returns a context whose Publish calls report every
// envelope they build to fn (with its final ID, trace context and
// correlation id in Metadata), in publish order, before it is queued or
// stored. fxtest uses it to record exactly what a service published.
func WithEnvelopeObserver(ctx context.Context, fn func(Envelope)) context.Context {
	return context.WithValue(ctx, observerKey{}, fn)
}

func observe(ctx context.Context, env Envelope) {
	if fn, ok := ctx.Value(observerKey{}).(func(Envelope)); ok && fn != nil {
		fn(env)
	}
}
