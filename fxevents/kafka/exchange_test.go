package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/kafka"
)

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Two services over kfake: records keyed by aggregate (one aggregate, one
// partition) with the event id, source and trace context in headers; the
// consumer's handler span continues the publisher's trace; the metrics
// count what went through and the lag drops to 0.
func TestPublishToConsumerServiceKeysHeadersTraceAndMetrics(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	prefix := "t" + randHex(4)
	got := newReceived()
	cons := newApp(t, "notifier", c.env(prefix), recordingHandler("mailer", got))
	pub := newApp(t, "orders", c.env(prefix))

	const n = 40
	for i := range n {
		require.NoError(t, pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%5), Seq: i}))
	}
	eventually(t, func() bool { return got.distinct() == n }, "the consumer gets every event")

	recs := c.consumeAll(t, prefix+".orders.placed", n)
	partitionOf := map[string]int32{}
	for _, r := range recs {
		agg := string(r.Key)
		require.Equal(t, agg, header(r, kafka.HeaderAggregateID))
		if p, ok := partitionOf[agg]; ok {
			require.Equal(t, p, r.Partition, "aggregate %s stays on one partition", agg)
		}
		partitionOf[agg] = r.Partition
		require.Len(t, header(r, kafka.HeaderEventID), 36)
		require.Equal(t, "orders", header(r, kafka.HeaderSource))
		require.Equal(t, "orders.placed", header(r, kafka.HeaderType))
		require.Contains(t, header(r, "traceparent"), "00-")
	}
	require.Len(t, partitionOf, 5)

	publishes := map[trace.SpanID]trace.TraceID{}
	for _, s := range pub.Spans() {
		if s.Name() == "publish orders.placed" {
			publishes[s.SpanContext().SpanID()] = s.SpanContext().TraceID()
		}
	}
	require.Len(t, publishes, n)
	processed := 0
	for _, s := range cons.Spans() {
		if s.Name() != "process orders.placed" {
			continue
		}
		processed++
		tid, ok := publishes[s.Parent().SpanID()]
		require.True(t, ok, "the handler span's parent is a publish span of the other app")
		require.Equal(t, tid, s.SpanContext().TraceID())
	}
	require.Equal(t, n, processed)

	group := kafka.GroupName("notifier", "mailer")
	require.Equal(t, "notifier_mailer", group)
	require.Equal(t, float64(n), metric(t, pub.reg, "marty_kafka_published_total", map[string]string{"topic": prefix + ".orders.placed"}))
	require.Equal(t, float64(n), metric(t, pub.reg, "marty_kafka_publish_duration_seconds", nil))
	require.Equal(t, float64(n), metric(t, cons.reg, "marty_kafka_consumed_total", map[string]string{"group": group}))
	require.GreaterOrEqual(t, metric(t, cons.reg, "marty_kafka_rebalances_total", map[string]string{"group": group}), 1.0)
	for p := range int32(4) {
		lag := metric(t, cons.reg, "marty_kafka_consumer_lag", map[string]string{"group": group, "topic": prefix + ".orders.placed", "partition": fmt.Sprint(p)})
		require.Zero(t, lag)
	}
	// The group's committed offsets cover every record.
	adm := kadm.NewClient(c.client(t))
	eventually(t, func() bool {
		offs, err := adm.FetchOffsets(context.Background(), group)
		if err != nil {
			return false
		}
		var sum int64
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum == n
	}, "the group committed every record")
}

// A failing handler is retried in place after the configured delays, then
// copied to the dead-letter topic with the failure's headers, kept in the
// dispatcher's dead-letter store (the dashboard's), and not delivered again.
func TestFailingHandlerRetriesThenDeadLetterTopic(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	prefix := "t" + randHex(4)
	got := newReceived()
	ta := newApp(t, "billing", c.env(prefix, "MARTY_EVENTS_MAX_ATTEMPTS=3", "MARTY_KAFKA_BACKOFF=200ms,400ms"),
		fxevents.AsHandler(fxevents.HandlerFunc("charge", func(ctx context.Context, e OrderPlaced) error {
			got.add(fxevents.CorrelationID(ctx), e.Seq)
			if e.OrderID == "ok" {
				return nil
			}
			return fmt.Errorf("card declined for %s", e.OrderID)
		})))
	ctx := context.Background()
	require.NoError(t, ta.bus.Publish(ctx, OrderPlaced{OrderID: "o7"}))

	dead := c.consumeAll(t, prefix+".deadletter.billing_charge", 1)[0]
	require.Equal(t, "o7", string(dead.Key))
	require.Equal(t, "charge", header(dead, kafka.HeaderDeadHandler))
	require.Equal(t, "billing_charge", header(dead, kafka.HeaderDeadGroup))
	require.Equal(t, "3", header(dead, kafka.HeaderDeadAttempts))
	require.Equal(t, "card declined for o7", header(dead, kafka.HeaderDeadError))
	require.Equal(t, prefix+".orders.placed", header(dead, kafka.HeaderDeadTopic))
	require.Equal(t, "0", header(dead, kafka.HeaderDeadOffset))
	require.NotEmpty(t, header(dead, kafka.HeaderEventID))
	require.JSONEq(t, `{"order_id":"o7","seq":0}`, string(dead.Value))

	got.mu.Lock()
	times := append([]time.Time(nil), got.at...)
	got.mu.Unlock()
	require.Len(t, times, 3)
	require.GreaterOrEqual(t, times[1].Sub(times[0]), 190*time.Millisecond, "first retry after 200ms")
	require.GreaterOrEqual(t, times[2].Sub(times[1]), 390*time.Millisecond, "second retry after 400ms")

	dls, err := ta.disp.DeadLetters().List(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, "card declined for o7", dls[0].Error)
	eventually(t, func() bool {
		return metric(t, ta.reg, "marty_kafka_dead_letters_total", map[string]string{"group": "billing_charge"}) == 1
	}, "dead letters counted")
	require.Equal(t, 2.0, metric(t, ta.reg, "marty_kafka_retries_total", map[string]string{"group": "billing_charge"}))

	// The partition moved on: a later event of the same aggregate's
	// partition is handled, the dead one was not delivered again.
	require.NoError(t, ta.bus.Publish(ctx, OrderPlaced{OrderID: "ok", Seq: 1}))
	eventually(t, func() bool { return got.total() == 4 }, "the next event is handled")
	require.Equal(t, []int{0, 0, 0, 1}, got.seqs)
}
