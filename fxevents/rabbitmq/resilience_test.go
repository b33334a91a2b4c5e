package rabbitmq_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/rabbitmq"
	"github.com/martyfx/martyfx/fxmonitor"
)

// A failing handler is retried through the delay queues, each attempt
// after the growing TTL of its level (a message cannot come back from a
// delay queue earlier), then the message goes to the dead-letter queue and
// the dispatcher's dead letters, from where the dashboard's re-drive runs
// it again.
func TestRetriesWithGrowingDelaysThenDeadLetterAndRedrive(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	var fail atomic.Bool
	fail.Store(true)
	var mu sync.Mutex
	var calls []time.Time
	cons := newApp(t, "notifier", tg.env("MARTY_EVENTS_MAX_ATTEMPTS=4", "MARTY_RABBITMQ_BACKOFF=200ms,400ms,800ms"),
		fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(_ context.Context, e OrderPlaced) error {
			mu.Lock()
			calls = append(calls, time.Now())
			mu.Unlock()
			if fail.Load() {
				return errors.New("smtp down")
			}
			return nil
		})))
	pub := newApp(t, "orders", tg.env())
	require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1", Seq: 1}))

	consumer := rabbitmq.ConsumerName("notifier", "mailer")
	eventually(t, func() bool {
		return metric(t, cons.reg, "marty_rabbitmq_dead_letters_total", map[string]string{"consumer": consumer}) == 1
	}, "the message is dead-lettered")
	mu.Lock()
	require.Len(t, calls, 4, "one run per attempt")
	for i, min := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		require.GreaterOrEqual(t, calls[i+1].Sub(calls[i]), min, "attempt %d waits its delay queue's TTL", i+2)
	}
	mu.Unlock()
	require.Equal(t, 3.0, metric(t, cons.reg, "marty_rabbitmq_retried_total", map[string]string{"consumer": consumer}))

	// The dead-letter queue holds the message with the error.
	ch, err := tg.amqpConn(t).Channel()
	require.NoError(t, err)
	d, ok, err := ch.Get(rabbitmq.DeadQueueName("marty.events", consumer), true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "mailer", d.Headers[rabbitmq.HeaderDeadHandler])
	require.Contains(t, d.Headers[rabbitmq.HeaderDeadError], "smtp down")
	require.EqualValues(t, 4, d.Headers[rabbitmq.HeaderDeadAttempts])
	require.Equal(t, rabbitmq.QueueName("marty.events", consumer, rabbitmq.Partition("o1", 4)), d.Headers[rabbitmq.HeaderDeadQueue])

	// The dashboard lists it and re-drives it.
	dead := cons.disp.DeadLetters()
	dls, err := dead.List(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, 4, dls[0].Attempts)
	require.Equal(t, d.MessageId, dls[0].Envelope.ID)
	fail.Store(false)
	require.NoError(t, dead.Retry(context.Background(), dls[0].ID))
	mu.Lock()
	require.Len(t, calls, 5, "re-driven once")
	mu.Unlock()
	dls, err = dead.List(context.Background(), 10)
	require.NoError(t, err)
	require.Empty(t, dls)
}

// A Permanent error goes to the dead-letter queue at once.
func TestPermanentErrorIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	var calls atomic.Int32
	cons := newApp(t, "notifier", tg.env(),
		fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(_ context.Context, e OrderPlaced) error {
			calls.Add(1)
			return fxevents.Permanent(errors.New("bad address"))
		})))
	pub := newApp(t, "orders", tg.env())
	require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1", Seq: 1}))
	consumer := rabbitmq.ConsumerName("notifier", "mailer")
	eventually(t, func() bool {
		return metric(t, cons.reg, "marty_rabbitmq_dead_letters_total", map[string]string{"consumer": consumer}) == 1
	}, "the message is dead-lettered")
	require.Equal(t, int32(1), calls.Load())
	require.Zero(t, metric(t, cons.reg, "marty_rabbitmq_retried_total", map[string]string{"consumer": consumer}))
}

func checkNamed(t *testing.T, ta *testApp, name string) fxmonitor.Check {
	t.Helper()
	for _, c := range ta.checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q", name)
	return fxmonitor.Check{}
}

// The broker becomes unreachable (a proxy in front of it is cut) while the
// outbox publisher writes: writes go on, the readiness check fails without
// being critical, and after the network comes back the client's recovery
// reconnects publisher and consumer: every event takes effect exactly
// once, nothing is dead-lettered.
func TestBrokerOutageDelaysAndLosesNothing(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	px := newProxy(t, hostPort(t, tg))
	viaProxy := target{url: px.url(t, tg), vhost: tg.vhost}
	pub := newDBApp(t, "orders", viaProxy.env(append([]string{"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=100ms",
		"MARTY_RABBITMQ_READINESS_GRACE=0s"}, dbEnv(t)...)...))
	var handled atomic.Int32
	got := newReceived()
	cons := effectsApp(t, "notifier", viaProxy.env(dbEnv(t)...), got, &handled)

	health := checkNamed(t, pub, "rabbitmq")
	require.False(t, health.Critical, "with the outbox the pod absorbs a broker outage")
	require.True(t, checkNamed(t, cons, "rabbitmq").Critical, "with the memory bus publishing needs the broker")

	const n = 300
	var published atomic.Int32
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := pub.uow.Do(context.Background(), func(ctx context.Context) error {
				return pub.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("o%d", i%7), Seq: i})
			}); err != nil {
				done <- err
				return
			}
			published.Add(1)
			time.Sleep(2 * time.Millisecond) // a steady flow of writes
		}
		done <- nil
	}()
	eventually(t, func() bool { return handled.Load() >= 30 }, "events flow before the outage")
	px.cut()
	eventually(t, func() bool { return health.Func(context.Background()) != nil }, "the check notices the outage")
	during := published.Load()
	eventually(t, func() bool { return published.Load() >= during+20 || published.Load() == n }, "the outbox accepts writes while the broker is unreachable")
	require.Less(t, got.distinct(), n)
	px.restore(t)
	require.NoError(t, <-done)

	eventually(t, func() bool { r, _ := countEffects(t, cons.db); return r >= n }, "every event takes effect after the outage")
	eventually(t, func() bool { return health.Func(context.Background()) == nil }, "the check recovers")
	rows, distinct := countEffects(t, cons.db)
	require.Equal(t, int64(n), rows, "each effect once")
	require.Equal(t, int64(n), distinct)
	requireOrdered(t, got)
	var left, dead int64
	eventually(t, func() bool {
		return pub.db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error == nil && left == 0
	}, "the outbox drains")
	require.NoError(t, pub.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
	require.Zero(t, dead, "nothing dead-lettered by the outage")
	require.GreaterOrEqual(t, metric(t, pub.reg, "marty_rabbitmq_reconnects_total", nil), 1.0)
	require.GreaterOrEqual(t, metric(t, cons.reg, "marty_rabbitmq_reconnects_total", nil), 1.0)
}

// The broker closes the connections itself (rabbitmqctl
// close_all_connections on the test's vhost): the client recovers and
// events keep flowing, each taking effect once.
func TestServerClosedConnectionIsRecovered(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	var handled atomic.Int32
	cons := effectsApp(t, "notifier", tg.env(dbEnv(t)...), nil, &handled)
	pub := newApp(t, "orders", tg.env())
	for i := range 100 {
		require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%5), Seq: i}))
	}
	eventually(t, func() bool { r, _ := countEffects(t, cons.db); return r >= 100 }, "the first events take effect")
	out, err := exec.Command("rabbitmqctl", "close_all_connections", "-p", tg.vhost, "test: server-side close").CombinedOutput()
	require.NoError(t, err, string(out))
	eventually(t, func() bool {
		return metric(t, cons.reg, "marty_rabbitmq_reconnects_total", nil) >= 1 && metric(t, pub.reg, "marty_rabbitmq_reconnects_total", nil) >= 1
	}, "both apps recover their connection")
	for i := 100; i < 200; i++ {
		require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%5), Seq: i}))
	}
	eventually(t, func() bool { r, _ := countEffects(t, cons.db); return r >= 200 }, "events flow after the recovery")
	rows, distinct := countEffects(t, cons.db)
	require.Equal(t, int64(200), rows)
	require.Equal(t, int64(200), distinct)
}

func hostPort(t *testing.T, tg target) string {
	t.Helper()
	u := tg.url
	ta := rabbitmqHost(u)
	require.NotEmpty(t, ta)
	return ta
}

// A message of another producer without a message_id (no event id for
// the inbox) goes to the dead-letter queue without running the handler.
func TestMessageWithoutIDIsDeadLettered(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	var calls atomic.Int32
	cons := newApp(t, "notifier", tg.env(), fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(context.Context, OrderPlaced) error {
		calls.Add(1)
		return nil
	})))
	ch, err := tg.amqpConn(t).Channel()
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "marty.events", rabbitmq.RoutingKey("orders.placed", 0), false, false,
		amqp.Publishing{Type: "orders.placed", Body: []byte(`{"order_id":"x"}`)}))
	consumer := rabbitmq.ConsumerName("notifier", "mailer")
	eventually(t, func() bool {
		return metric(t, cons.reg, "marty_rabbitmq_dead_letters_total", map[string]string{"consumer": consumer}) == 1
	}, "the message is dead-lettered")
	require.Zero(t, calls.Load())
	d, ok, err := ch.Get(rabbitmq.DeadQueueName("marty.events", consumer), true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, d.Headers[rabbitmq.HeaderDeadError], "without message_id")
}
