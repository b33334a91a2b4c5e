package rabbitmq_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/rabbitmq"
	"github.com/martyfx/martyfx/fxrepo"
)

// effectsApp is a consumer service whose Idempotent handler writes one row
// per event in the effects table of its database (the inbox in the same
// transaction), recording the order it saw each aggregate's events in.
func effectsApp(t *testing.T, service string, env []string, got *received, handled *atomic.Int32, extra ...fx.Option) *testApp {
	t.Helper()
	opts := append([]fx.Option{fxevents.AsHandler(func(db *gorm.DB) fxevents.Handler {
		return fxevents.Idempotent(fxevents.HandlerFunc("mailer", func(ctx context.Context, e OrderPlaced) error {
			if handled != nil {
				handled.Add(1)
			}
			if err := fxrepo.DB(ctx, db).Exec("INSERT INTO effects (seq, agg) VALUES (?, ?)", e.Seq, e.OrderID).Error; err != nil {
				return err
			}
			if got != nil {
				got.add(fxevents.CorrelationID(ctx), e.OrderID, e.Seq)
			}
			return nil
		}))
	})}, extra...)
	ta := newDBApp(t, service, env, opts...)
	require.NoError(t, ta.db.Exec("CREATE TABLE IF NOT EXISTS effects (seq INTEGER NOT NULL, agg TEXT NOT NULL)").Error)
	return ta
}

func countEffects(t *testing.T, db *gorm.DB) (rows, distinct int64) {
	t.Helper()
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM effects").Scan(&rows).Error)
	require.NoError(t, db.Raw("SELECT COUNT(DISTINCT seq) FROM effects").Scan(&distinct).Error)
	return rows, distinct
}

func requireOrdered(t *testing.T, got *received) {
	t.Helper()
	got.mu.Lock()
	defer got.mu.Unlock()
	for agg, seqs := range got.byAgg {
		require.True(t, slices.IsSorted(seqs), "aggregate %s handled out of order: %v", agg, seqs)
	}
}

// The outbox relays to RabbitMQ with publisher confirms; the consumer
// service's Idempotent handler takes effect exactly once per event, each
// aggregate's events in order, in spans continuing the publisher's trace,
// with the publisher's baggage.
func TestOutboxToConsumerExactlyOnceInOrderWithTraceAndBaggage(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	pub := newDBApp(t, "orders", tg.env(append([]string{"MARTY_EVENTS_BUS=outbox"}, dbEnv(t)...)...))
	got := newReceived()
	var bags atomic.Int32
	cons := effectsApp(t, "notifier", tg.env(dbEnv(t)...), got, nil,
		fxevents.AsHandler(fxevents.HandlerFunc("auditor", func(ctx context.Context, e OrderPlaced) error {
			if baggage.FromContext(ctx).Member("tenant").Value() == "acme" {
				bags.Add(1)
			}
			return nil
		})))

	const n, aggs = 400, 25
	bctx := context.Background()
	m, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	b, err := baggage.New(m)
	require.NoError(t, err)
	bctx = baggage.ContextWithBaggage(bctx, b)
	for i := range n {
		require.NoError(t, pub.uow.Do(bctx, func(ctx context.Context) error {
			return pub.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("o%d", i%aggs), Seq: i})
		}))
	}
	eventually(t, func() bool { r, _ := countEffects(t, cons.db); return r >= n }, "every event takes effect")
	eventually(t, func() bool { return bags.Load() == n }, "the auditor sees the baggage on every event")
	rows, distinct := countEffects(t, cons.db)
	require.Equal(t, int64(n), rows, "each effect once")
	require.Equal(t, int64(n), distinct)
	requireOrdered(t, got)
	require.Len(t, got.byAgg, aggs)
	var left int64
	eventually(t, func() bool {
		return pub.db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error == nil && left == 0
	}, "the outbox drains")

	publishes := map[trace.SpanID]trace.TraceID{}
	for _, s := range pub.spans.Ended() {
		if s.Name() == "publish orders.placed" {
			publishes[s.SpanContext().SpanID()] = s.SpanContext().TraceID()
		}
	}
	require.Len(t, publishes, n)
	processed := 0
	for _, s := range cons.spans.Ended() {
		if s.Name() != "process orders.placed" {
			continue
		}
		processed++
		tid, ok := publishes[s.Parent().SpanID()]
		require.True(t, ok, "the handler span's parent is a publish span of the other app")
		require.Equal(t, tid, s.SpanContext().TraceID())
	}
	require.Equal(t, 2*n, processed)
	require.Equal(t, float64(n), metric(t, pub.reg, "marty_rabbitmq_published_total", nil))
	require.Positive(t, metric(t, pub.reg, "marty_rabbitmq_publish_duration_seconds", nil))
	require.Equal(t, 1.0, metric(t, cons.reg, "marty_rabbitmq_connected", nil))
}

// On the wire: persistent, message_id = event id, type, app_id, the
// routing key of the aggregate's partition, trace context in headers.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	pub := newApp(t, "orders", tg.env("MARTY_RABBITMQ_PARTITIONS=4"))
	ch, err := tg.amqpConn(t).Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	p := rabbitmq.Partition("o7", 4)
	require.NoError(t, ch.QueueBind(q.Name, rabbitmq.RoutingKey("orders.placed", p), "marty.events", false, nil))

	require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: "o7", Seq: 1}))
	var d amqp.Delivery
	eventually(t, func() bool {
		var ok bool
		d, ok, err = ch.Get(q.Name, true)
		require.NoError(t, err)
		return ok
	}, "the event reaches the partition's routing key")
	require.Equal(t, amqp.Persistent, d.DeliveryMode)
	require.Len(t, d.MessageId, 36)
	require.Equal(t, "orders.placed", d.Type)
	require.Equal(t, "orders", d.AppId)
	require.Equal(t, "o7", d.Headers[rabbitmq.HeaderAggregateID])
	require.Contains(t, d.Headers["traceparent"], "00-")
	env, err := rabbitmq.Envelope(d)
	require.NoError(t, err)
	require.Equal(t, d.MessageId, env.ID)
	require.JSONEq(t, `{"order_id":"o7","seq":1}`, string(env.Payload))
	require.Contains(t, env.Metadata["traceparent"], "00-")
}

// An envelope published twice (a relay that crashed before marking it
// sent) is two messages with one message_id: the inbox makes one effect.
func TestRepublishedEventIDTakesEffectOnce(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	var handled atomic.Int32
	cons := effectsApp(t, "notifier", tg.env(dbEnv(t)...), nil, &handled)
	pub := newApp(t, "orders", tg.env())
	env, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "o1", Seq: 7}, fxevents.DefaultCodec())
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, pub.conn.Publish(ctx, env))
	require.NoError(t, pub.conn.Publish(ctx, env))
	env2, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "o1", Seq: 8}, fxevents.DefaultCodec())
	require.NoError(t, err)
	require.NoError(t, pub.conn.Publish(ctx, env2)) // after both copies, in the same partition
	eventually(t, func() bool { r, _ := countEffects(t, cons.db); return r >= 2 }, "the events take effect")
	eventually(t, func() bool {
		return metric(t, cons.reg, "marty_events_inbox_skipped_total", map[string]string{"handler": "mailer"}) >= 1 || handled.Load() >= 2
	}, "the duplicate is delivered")
	rows, distinct := countEffects(t, cons.db)
	require.Equal(t, int64(2), rows, "the duplicate took no effect")
	require.Equal(t, int64(2), distinct)
}

// A second service gets every event in queues of its own; each service's
// handler receives all of them.
func TestSecondServiceReceivesEverything(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	a, b := newReceived(), newReceived()
	newApp(t, "notifier", tg.env(), recordingHandler("mailer", a))
	newApp(t, "billing", tg.env(), recordingHandler("mailer", b))
	pub := newApp(t, "orders", tg.env())
	const n = 200
	for i := range n {
		require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%9), Seq: i}))
	}
	eventually(t, func() bool { return a.distinct() == n && b.distinct() == n }, "both services get every event (%d, %d)", a.distinct(), b.distinct())
	requireOrdered(t, a)
	requireOrdered(t, b)
}

// Two replicas share a service's partitions (single-active-consumer per
// partition, rebalanced), and the inbox makes each effect once.
func TestReplicasShareTheWork(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	db := dbEnv(t)
	env := tg.env(append([]string{"MARTY_RABBITMQ_PARTITIONS=4", "MARTY_RABBITMQ_REBALANCE_INTERVAL=200ms"}, db...)...)
	var h0, h1 atomic.Int32
	slow := fx.Invoke(func() {})
	got := newReceived()
	r0 := effectsApp(t, "notifier", env, got, &h0, slow)
	r1 := effectsApp(t, "notifier", env, got, &h1, slow)
	pub := newApp(t, "orders", tg.env("MARTY_RABBITMQ_PARTITIONS=4"))

	const n = 2000
	var envs []fxevents.Envelope
	for i := range n {
		e, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: fmt.Sprintf("o%d", i%16), Seq: i}, fxevents.DefaultCodec())
		require.NoError(t, err)
		envs = append(envs, e)
	}
	for i := 0; i < n; i += 100 {
		require.NoError(t, pub.conn.Publish(context.Background(), envs[i:i+100]...))
	}
	eventually(t, func() bool { r, _ := countEffects(t, r0.db); return r >= n }, "every event takes effect")
	rows, distinct := countEffects(t, r0.db)
	require.Equal(t, int64(n), rows, "each effect once")
	require.Equal(t, int64(n), distinct)
	require.Positive(t, h0.Load(), "replica 0 takes a share")
	require.Positive(t, h1.Load(), "replica 1 takes a share")
	consumer := map[string]string{"consumer": rabbitmq.ConsumerName("notifier", "mailer")}
	handoffs := metric(t, r0.reg, "marty_rabbitmq_partition_handoffs_total", consumer) + metric(t, r1.reg, "marty_rabbitmq_partition_handoffs_total", consumer)
	require.GreaterOrEqual(t, handoffs, 1.0, "the first replica handed partitions to the second")
	t.Logf("replica shares: %d / %d, handoffs %v", h0.Load(), h1.Load(), handoffs)
}

// A consumer stopped mid-stream and started again loses nothing: what it
// had received and not acknowledged goes back to the queues when it stops
// and is delivered to the new instance.
func TestConsumerRestartLosesNothing(t *testing.T) {
	t.Parallel()
	tg := newTarget(t)
	db := dbEnv(t)
	var handled atomic.Int32
	gate := make(chan struct{})
	cons := effectsApp(t, "notifier", tg.env(db...), nil, nil,
		fxevents.AsHandlerMiddleware(func(next fxevents.Handler) fxevents.Handler {
			return fxevents.WrapHandler(next, func(ctx context.Context, env fxevents.Envelope) error {
				if handled.Add(1) > 100 {
					<-gate // holds the rest until the stop begins
				}
				return next.Handle(ctx, env)
			})
		}, 1))
	pub := newApp(t, "orders", tg.env())
	const n = 600
	for i := range n {
		require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%11), Seq: i}))
	}
	eventually(t, func() bool { return handled.Load() > 100 }, "the consumer takes some")
	start := time.Now()
	close(gate)
	cons.stop()
	t.Logf("stopped in %s", time.Since(start))
	cons2 := effectsApp(t, "notifier", tg.env(db...), nil, nil)
	eventually(t, func() bool { r, _ := countEffects(t, cons2.db); return r >= n }, "every event takes effect after the restart")
	rows, distinct := countEffects(t, cons2.db)
	require.Equal(t, int64(n), rows)
	require.Equal(t, int64(n), distinct)
}

var _ = time.Second
