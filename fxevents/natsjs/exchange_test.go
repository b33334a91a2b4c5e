package natsjs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/natsjs"
)

// recordingHandler registers a handler named name that records OrderPlaced.
func recordingHandler(name string, r *received) fx.Option {
	return fxevents.AsHandler(fxevents.HandlerFunc(name, func(ctx context.Context, e OrderPlaced) error {
		env := fxevents.CorrelationID(ctx) // the event id for a chain's first
		r.add(env, e.Seq)
		return nil
	}))
}

// Two services: the publisher stores events in its outbox (Postgres, or
// SQLite without MARTY_TEST_POSTGRES_DSN) and relays them to JetStream; the
// consumer service's handler receives them in a span continuing the
// publisher's trace.
func TestOutboxPublisherToConsumerServiceContinuesTheTrace(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		pub := newDBApp(t, "orders", tg.env(append([]string{"MARTY_EVENTS_BUS=outbox"}, dbEnv(t)...)...))
		got := newReceived()
		cons := newApp(t, "notifier", tg.env(), recordingHandler("mailer", got))

		const n = 50
		ctx := context.Background()
		for i := range n {
			require.NoError(t, pub.uow.Do(ctx, func(ctx context.Context) error {
				return pub.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("o%d", i%5), Seq: i})
			}))
		}
		eventually(t, func() bool { return got.distinct() == n }, "the consumer gets every event")
		var left int64
		eventually(t, func() bool {
			return pub.db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error == nil && left == 0
		}, "the outbox drains")

		// The consumer's handler spans continue the publisher's trace.
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
			require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		}
		require.Equal(t, n, processed)

		// On the wire: the subject, the message id and the trace context.
		js := tg.js(t)
		st, err := js.Stream(ctx, tg.stream)
		require.NoError(t, err)
		raw, err := st.GetMsg(ctx, 1)
		require.NoError(t, err)
		require.Equal(t, tg.prefix+".orders.placed", raw.Subject)
		require.Len(t, raw.Header.Get(jetstream.MsgIDHeader), 36)
		require.Contains(t, raw.Header.Get("traceparent"), "00-")
		require.Equal(t, "orders", raw.Header.Get(natsjs.HeaderSource))
		require.Regexp(t, `^o[0-4]$`, raw.Header.Get(natsjs.HeaderAggregateID))

		require.Equal(t, float64(n), metric(t, pub.reg, "marty_nats_published_total", nil))
		require.Equal(t, float64(n), metric(t, pub.reg, "marty_nats_publish_duration_seconds", nil))
		require.Equal(t, 1.0, metric(t, cons.reg, "marty_nats_connected", nil))
		consumer := natsjs.ConsumerName("notifier", "mailer")
		require.Equal(t, "notifier_mailer", consumer)
		jc, err := js.Consumer(ctx, tg.stream, consumer)
		require.NoError(t, err)
		eventually(t, func() bool {
			info, err := jc.Info(ctx)
			return err == nil && info.NumAckPending == 0 && info.NumPending == 0
		}, "every message acknowledged")
	})
}

func TestSameEnvelopePublishedTwiceIsStoredOnce(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		ta := newApp(t, "orders", tg.env())
		env, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "o1"}, fxevents.DefaultCodec())
		require.NoError(t, err)
		ctx := context.Background()
		require.NoError(t, ta.conn.Publish(ctx, env))
		require.NoError(t, ta.conn.Publish(ctx, env))
		require.NoError(t, ta.conn.Publish(ctx, env, env))
		st, err := tg.js(t).Stream(ctx, tg.stream)
		require.NoError(t, err)
		info, err := st.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, uint64(1), info.State.Msgs)
		require.Equal(t, 3.0, metric(t, ta.reg, "marty_nats_publish_duplicates_total", nil))
		require.Equal(t, 4.0, metric(t, ta.reg, "marty_nats_published_total", nil))
	})
}

// A failing handler is redelivered after the configured delays, then
// terminated and copied to the dead-letter subject.
func TestFailingHandlerIsRedeliveredWithDelayThenDeadLettered(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		got := newReceived()
		ta := newApp(t, "billing", tg.env("MARTY_EVENTS_MAX_ATTEMPTS=3", "MARTY_NATS_BACKOFF=200ms,400ms"),
			fxevents.AsHandler(fxevents.HandlerFunc("charge", func(ctx context.Context, e OrderPlaced) error {
				got.add(fxevents.CorrelationID(ctx), e.Seq)
				return fmt.Errorf("card declined for %s", e.OrderID)
			})))
		ctx := context.Background()
		require.NoError(t, ta.bus.Publish(ctx, OrderPlaced{OrderID: "o7"}))

		js := tg.js(t)
		dead, err := js.OrderedConsumer(ctx, tg.stream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{tg.prefix + ".deadletter.>"}})
		require.NoError(t, err)
		msg, err := dead.Next(jetstream.FetchMaxWait(15 * time.Second))
		require.NoError(t, err)
		require.Equal(t, tg.prefix+".deadletter.billing_charge", msg.Subject())
		h := msg.Headers()
		require.Equal(t, "charge", h.Get(natsjs.HeaderDeadHandler))
		require.Equal(t, "billing_charge", h.Get(natsjs.HeaderDeadConsumer))
		require.Equal(t, "3", h.Get(natsjs.HeaderDeadAttempts))
		require.Equal(t, "card declined for o7", h.Get(natsjs.HeaderDeadError))
		require.Equal(t, tg.prefix+".orders.placed", h.Get(natsjs.HeaderDeadSubject))
		require.JSONEq(t, `{"order_id":"o7","seq":0}`, string(msg.Data()))

		got.mu.Lock()
		times := append([]time.Time(nil), got.times...)
		got.mu.Unlock()
		require.Len(t, times, 3)
		require.GreaterOrEqual(t, times[1].Sub(times[0]), 190*time.Millisecond, "first redelivery after 200ms")
		require.GreaterOrEqual(t, times[2].Sub(times[1]), 390*time.Millisecond, "second redelivery after 400ms")

		dls, err := ta.disp.DeadLetters().List(ctx, 0)
		require.NoError(t, err)
		require.Len(t, dls, 1)
		require.Equal(t, "card declined for o7", dls[0].Error)
		eventually(t, func() bool {
			return metric(t, ta.reg, "marty_nats_dead_letters_total", map[string]string{"consumer": "billing_charge"}) == 1
		}, "dead letters counted")

		jc, err := js.Consumer(ctx, tg.stream, "billing_charge")
		require.NoError(t, err)
		eventually(t, func() bool {
			info, err := jc.Info(ctx)
			return err == nil && info.NumAckPending == 0 && info.NumPending == 0
		}, "the message is terminated")
		time.Sleep(600 * time.Millisecond)
		require.Equal(t, 3, got.total(), "no delivery after the dead letter")
	})
}
