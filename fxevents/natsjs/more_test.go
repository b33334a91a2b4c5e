package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/internal/nettest"
)

// With MARTY_NATS_MAX_DELIVERIES below MARTY_EVENTS_MAX_ATTEMPTS the consumer
// dead-letters after its own max; the consumer gauges are exported.
func TestMaxDeliveriesDeadLetterAtTheConsumer(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, startServer(t, t.TempDir(), 0).ClientURL())
	var attempts atomic.Int32
	ta := newApp(t, "billing", tg.env("MARTY_EVENTS_MAX_ATTEMPTS=5", "MARTY_NATS_MAX_DELIVERIES=2", "MARTY_NATS_BACKOFF=50ms"),
		fxevents.AsHandler(fxevents.HandlerFunc("charge", func(context.Context, OrderPlaced) error {
			attempts.Add(1)
			return errors.New("declined")
		})))
	ctx := context.Background()
	require.NoError(t, ta.bus.Publish(ctx, OrderPlaced{OrderID: "o1"}))
	eventually(t, func() bool {
		return metric(t, ta.reg, "marty_nats_dead_letters_total", map[string]string{"consumer": "billing_charge"}) == 1
	}, "dead-lettered by the consumer")
	require.Equal(t, int32(2), attempts.Load())
	dls, err := ta.disp.DeadLetters().List(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, 2, dls[0].Attempts)
	st, err := tg.js(t).Stream(ctx, tg.stream)
	require.NoError(t, err)
	raw, err := st.GetLastMsgForSubject(ctx, tg.prefix+".deadletter.billing_charge")
	require.NoError(t, err)
	require.Equal(t, "2", raw.Header.Get("Marty-Dead-Attempts"))
	require.Equal(t, dls[0].Envelope.ID+":dead:billing_charge", raw.Header.Get(jetstream.MsgIDHeader))
	eventually(t, func() bool {
		return metric(t, ta.reg, "marty_nats_consumer_redelivered", map[string]string{"consumer": "billing_charge"}) == 0 &&
			metric(t, ta.reg, "marty_nats_consumer_ack_pending", map[string]string{"consumer": "billing_charge"}) == 0 &&
			hasMetric(t, ta, "marty_nats_consumer_pending")
	}, "consumer gauges")
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, int32(2), attempts.Load(), "no delivery after the dead letter")
}

func hasMetric(t *testing.T, ta *testApp, name string) bool {
	mfs, err := ta.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

// While NATS is down, Publish waits for the reconnection until its context
// ends, and fails at once once the app is stopping.
func TestPublishWhileDisconnectedWaitsForContextOrStop(t *testing.T) {
	dir, port := t.TempDir(), nettest.FreePort(t)
	srv := startServer(t, dir, port)
	tg := newTarget(t, srv.ClientURL())
	ta := newApp(t, "orders", tg.env())
	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, func() bool { return metric(t, ta.reg, "marty_nats_connected", nil) == 0 }, "disconnected")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := ta.bus.Publish(ctx, OrderPlaced{OrderID: "o1"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, fxevents.ErrTransportUnavailable, "the outbox relay counts no attempt for it")
	require.ErrorContains(t, err, "natsjs: waiting for the connection to nats://127.0.0.1:"+strconv.Itoa(port))
	require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)

	// A publish waiting when the server comes back goes through.
	res := make(chan error, 1)
	go func() { res <- ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o2"}) }()
	time.Sleep(200 * time.Millisecond)
	srv = startServer(t, dir, port)
	require.NoError(t, <-res)
	require.Equal(t, 1.0, metric(t, ta.reg, "marty_nats_published_total", nil))

	// Once the app is stopping, a publish fails at once while disconnected.
	ta.conn.BeginStop()
	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, func() bool { return metric(t, ta.reg, "marty_nats_connected", nil) == 0 }, "disconnected")
	// Without a deadline of its own, a publish that waited for the server
	// would block; this one fails on the stop, saying so.
	err = ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o3"})
	require.ErrorContains(t, err, "and the app is stopping")
	require.ErrorIs(t, err, fxevents.ErrTransportUnavailable)
}

// Connected but the stream does not answer (here: deleted; in a cluster: no
// stream leader, no quorum): after the publish timeout the error matches
// fxevents.ErrTransportUnavailable, so the outbox relay keeps the events
// without counting attempts. A message the stream refuses is not that.
func TestPublishToAStreamThatDoesNotAnswerIsUnavailable(t *testing.T) {
	tg := newTarget(t, startServer(t, t.TempDir(), 0).ClientURL())
	ta := newApp(t, "orders", tg.env("MARTY_NATS_PUBLISH_TIMEOUT=300ms"))
	ctx := context.Background()
	js := tg.js(t)
	st, err := js.Stream(ctx, tg.stream)
	require.NoError(t, err)
	cfg := st.CachedInfo().Config
	cfg.MaxMsgSize = 64
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	err = ta.bus.Publish(ctx, OrderPlaced{OrderID: "o1", Seq: 1})
	require.Error(t, err, "a message over the stream's max size is refused")
	require.NotErrorIs(t, err, fxevents.ErrTransportUnavailable, "a refusal counts as an attempt")

	require.NoError(t, js.DeleteStream(ctx, tg.stream))
	err = ta.bus.Publish(ctx, OrderPlaced{OrderID: "o1", Seq: 2})
	require.ErrorIs(t, err, fxevents.ErrTransportUnavailable)
	require.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
	require.ErrorContains(t, err, "still failing after 300ms")
}
