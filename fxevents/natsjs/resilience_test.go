package natsjs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/internal/nettest"
)

// The NATS server stops and restarts mid-stream: the publisher's outbox
// keeps the events and drains after the reconnection, the consumer resumes,
// nothing is lost and nothing is dead-lettered.
func TestServerRestartMidStreamLosesNothing(t *testing.T) {
	dir, port := t.TempDir(), nettest.FreePort(t)
	srv := startServer(t, dir, port)
	tg := newTarget(t, srv.ClientURL())
	pub := newDBApp(t, "orders", tg.env(append([]string{"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=100ms"}, dbEnv(t)...)...))
	got := newReceived()
	newApp(t, "notifier", tg.env(), recordingHandler("mailer", got))

	const n = 300
	var published atomic.Int32
	done := make(chan error, 1)
	go func() {
		ctx := context.Background()
		for i := range n {
			if err := pub.uow.Do(ctx, func(ctx context.Context) error {
				return pub.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("o%d", i%7), Seq: i})
			}); err != nil {
				done <- err
				return
			}
			published.Add(1)
			time.Sleep(3 * time.Millisecond)
		}
		done <- nil
	}()
	eventually(t, func() bool { return got.distinct() >= 50 }, "events flow before the outage")
	srv.Shutdown()
	srv.WaitForShutdown()
	during := published.Load()
	time.Sleep(time.Second)
	require.Greater(t, published.Load(), during, "the outbox accepts events while NATS is down")
	require.Less(t, got.distinct(), n)
	startServer(t, dir, port) // the restart; its t.Cleanup stops it
	require.NoError(t, <-done)

	eventually(t, func() bool { return got.distinct() == n }, "every event arrives after the restart (got %d)", got.distinct())
	var left, dead int64
	eventually(t, func() bool {
		return pub.db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error == nil && left == 0
	}, "the outbox drains")
	require.NoError(t, pub.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
	require.Zero(t, dead, "nothing dead-lettered by the outage")
	require.GreaterOrEqual(t, metric(t, pub.reg, "marty_nats_reconnects_total", nil), 1.0)
}

// A slow handler keeps its message with InProgress (ack wait 1s, handler
// 2.5s: delivered once) and does not delay another handler of the same
// events, which has its own consumer.
func TestSlowHandlerDoesNotBlockAnotherAndKeepsItsMessage(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		fast, slow := newReceived(), newReceived()
		release := make(chan struct{})
		ta := newApp(t, "notifier", tg.env("MARTY_NATS_ACK_WAIT=1s", "MARTY_EVENTS_WORKERS=1"),
			recordingHandler("fast", fast),
			fxevents.AsHandler(fxevents.HandlerFunc("slow", func(ctx context.Context, e OrderPlaced) error {
				slow.add(fxevents.CorrelationID(ctx), e.Seq)
				if e.Seq == 0 {
					select {
					case <-release:
					case <-time.After(2500 * time.Millisecond):
					}
				}
				return nil
			})))
		const n = 20
		for i := range n {
			require.NoError(t, ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1", Seq: i}))
		}
		eventually(t, func() bool { return fast.distinct() == n }, "the fast handler gets everything")
		require.Equal(t, 1, slow.total(), "while the slow one is still on its first event")
		eventually(t, func() bool { return slow.distinct() == n }, "the slow handler catches up")
		time.Sleep(1500 * time.Millisecond)
		require.Zero(t, slow.dupes(), "InProgress kept the slow message from being redelivered")
		require.Zero(t, fast.dupes())
		close(release)
	})
}

// Stopping a consumer drains what it fetched: nothing is lost, and a new
// replica gets the rest, each event handled once.
func TestStopDrainsFetchedMessages(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		got := newReceived()
		var mu sync.Mutex
		slowly := fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(ctx context.Context, e OrderPlaced) error {
			mu.Lock()
			defer mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			got.add(fxevents.CorrelationID(ctx), e.Seq)
			return nil
		}))
		first := newApp(t, "notifier", tg.env("MARTY_NATS_FETCH_BATCH=50"), slowly)
		pub := newApp(t, "orders", tg.env())
		const n = 200
		for i := range n {
			require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i), Seq: i}))
		}
		eventually(t, func() bool { return got.total() >= 20 }, "handling started")
		first.stop(t)
		atStop := got.total()
		require.Less(t, atStop, n)
		newApp(t, "notifier", tg.env("MARTY_NATS_FETCH_BATCH=50"), slowly)
		eventually(t, func() bool { return got.distinct() == n }, "the new replica gets the rest")
		time.Sleep(200 * time.Millisecond)
		require.Zero(t, got.dupes(), "what the stopped replica fetched was handled and acknowledged, or handed back")
	})
}

func TestEmbeddedServerOnLoopback(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "js")
	got := newReceived()
	ta := newApp(t, "notifier", []string{"MARTY_NATS_EMBEDDED=true", "MARTY_NATS_STORE_DIR=" + dir, "MARTY_LOG_LEVEL=error"},
		recordingHandler("mailer", got))
	url := ta.conn.NATS().ConnectedUrl()
	require.True(t, strings.HasPrefix(url, "nats://127.0.0.1:"), url)
	require.NoError(t, ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1"}, OrderPlaced{OrderID: "o2", Seq: 1}))
	eventually(t, func() bool { return got.distinct() == 2 }, "events go round the embedded server")
	require.DirExists(t, filepath.Join(dir, "jetstream"))
	for _, c := range ta.checks {
		if c.Name == "nats" {
			require.NoError(t, c.Func(context.Background()))
		}
	}
}
