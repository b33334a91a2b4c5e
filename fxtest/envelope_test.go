package fxtest_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxtest"
)

// envelopeCatcher is a raw handler that keeps the envelopes it receives.
type envelopeCatcher struct {
	mu   sync.Mutex
	envs []fxevents.Envelope
}

func (*envelopeCatcher) Name() string         { return "catcher" }
func (*envelopeCatcher) EventTypes() []string { return []string{"orders.created"} }
func (c *envelopeCatcher) Handle(_ context.Context, env fxevents.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.envs = append(c.envs, env)
	return nil
}

// Events() records the envelope the bus really built and delivered: the
// same ID, and the trace context of the publishing request.
func TestEventsRecordTheRealEnvelopes(t *testing.T) {
	t.Parallel()
	catcher := &envelopeCatcher{}
	app := fxtest.New(t, OrdersModule, fxevents.AsHandler(func() fxevents.Handler { return catcher }))
	require.NoError(t, app.GRPC().Invoke(context.Background(), "/orders.Orders/Create", wrapperspb.String("a"), new(wrapperspb.Int64Value)))

	evs := app.Events()
	require.Len(t, evs, 1)
	catcher.mu.Lock()
	defer catcher.mu.Unlock()
	require.Len(t, catcher.envs, 1)
	require.Equal(t, catcher.envs[0].ID, evs[0].Envelope.ID, "the recorded envelope is the delivered one")
	require.NotEmpty(t, evs[0].Envelope.Metadata["traceparent"], "with the publisher's trace context")
	require.Equal(t, catcher.envs[0].Metadata, evs[0].Envelope.Metadata)
}
