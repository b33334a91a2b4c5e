package fxtest_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/fxtest"
)

// TestNATSTransport runs the harness over JetStream: events go through the
// broker, WaitHandled waits for the consumers, the recorder still sees them.
func TestNATSTransport(t *testing.T) {
	t.Parallel()
	url := natsdev.RunForTest(t)
	release := make(chan struct{})
	close(release)
	var done atomic.Int64
	var bus fxevents.Bus
	app := fxtest.New(t, natsjs.Module, fxtest.Env("MARTY_NATS_URL="+url), slowHandler(release, &done), fx.Populate(&bus))
	require.NoError(t, bus.Publish(context.Background(), OrderCreated{ID: 1, Item: "ok"}, OrderCreated{ID: 2, Item: "ok"}))
	app.WaitHandled()
	require.Equal(t, int64(2), done.Load())
	require.Len(t, fxtest.RequirePublished[OrderCreated](app), 2)
	app.RequireSpan("process orders.created", attribute.String("messaging.consumer.group.name", "slow"))
}
