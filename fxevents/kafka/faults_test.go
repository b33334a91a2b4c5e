package kafka_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requireLogOnce checks that topic holds exactly n records, each event id
// once: the idempotent producer stored every retried batch once.
func requireLogOnce(t *testing.T, c *cluster, topic string, n int) {
	t.Helper()
	recs := c.consumeAll(t, topic, n)
	ids := map[string]int{}
	for _, r := range recs {
		ids[header(r, "marty-event-id")]++
	}
	require.Len(t, recs, n, "records in %s", topic)
	require.Len(t, ids, n, "distinct event ids in %s", topic)
}

// Produce responses lost after the broker stored the batch (kfake answers
// REQUEST_TIMED_OUT after the append): the producer retries, every Publish
// succeeds, the log holds each event once (the idempotent producer) and
// the consumer gets each once.
func TestLostProduceResponsesLoseAndDuplicateNothing(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	prefix := "t" + randHex(4)
	got := newReceived()
	newApp(t, "notifier", c.env(prefix), recordingHandler("mailer", got))
	pub := newApp(t, "orders", c.env(prefix))
	ctx := context.Background()
	require.NoError(t, pub.bus.Publish(ctx, OrderPlaced{OrderID: "warm-up"})) // topic created, producer id taken

	lost := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Err: kerr.RequestTimedOut, Count: 3})

	const n = 60
	for i := range n {
		require.NoError(t, pub.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("o%d", i%6), Seq: i + 1}))
	}
	require.Equal(t, 3, lost.Hits(), "three responses lost")
	eventually(t, func() bool { return got.distinct() == n+1 }, "every event arrives")
	requireLogOnce(t, c, prefix+".orders.placed", n+1)
	require.Zero(t, got.dupes(), "nothing delivered twice")
}

// Partition leaders fail over mid-stream (three brokers; the old leader
// answers NOT_LEADER_FOR_PARTITION and the partitions move): publishing
// and consuming follow the new leaders, nothing is lost or stored twice.
func TestLeaderFailoverMidStreamLosesNothing(t *testing.T) {
	t.Parallel()
	c := newCluster(t, kfake.NumBrokers(3))
	prefix := "t" + randHex(4)
	topic := prefix + ".orders.placed"
	got := newReceived()
	newApp(t, "notifier", c.env(prefix), recordingHandler("mailer", got))
	// franz-go refreshes metadata at most every 5s (MetadataMinAge): a
	// publish must be allowed longer than that to reach a new leader.
	pub := newApp(t, "orders", c.env(prefix, "MARTY_KAFKA_PUBLISH_TIMEOUT=15s"))

	const n = 300
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%8), Seq: i}); err != nil {
				done <- err
				return
			}
			time.Sleep(2 * time.Millisecond) // a steady stream, not synchronisation
		}
		done <- nil
	}()
	eventually(t, func() bool { return got.distinct() >= 50 }, "events flow before the failover")
	var faults []*kfake.FaultHandle
	for p := range int32(4) {
		old := c.LeaderFor(topic, p)
		faults = append(faults, c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce, kmsg.Fetch}, Nodes: []int32{old},
			Topic: topic, Partitions: []int32{p},
			Err: kerr.NotLeaderForPartition, Count: -1}))
		require.NoError(t, c.MoveTopicPartition(topic, p, (old+1)%3))
	}
	require.NoError(t, <-done)
	eventually(t, func() bool { return got.distinct() == n }, "every event arrives after the failover (got %d)", got.distinct())
	hits := 0
	for _, f := range faults {
		hits += f.Hits()
		f.Remove()
	}
	require.Positive(t, hits, "the old leaders refused requests")
	requireLogOnce(t, c, topic, n)
}

// A second replica joins mid-stream and the first one stops later: each
// rebalance waits until the polled records are handled and committed, so
// the partitions change hands with nothing lost and nothing handled twice.
func TestRebalancesMidStreamHandOverWithoutLossOrDuplicates(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	prefix := "t" + randHex(4)
	got := newReceived()
	var byA, byB atomic.Int32
	handler := func(count *atomic.Int32) func(ctx context.Context, e OrderPlaced) error {
		return func(ctx context.Context, e OrderPlaced) error {
			count.Add(1)
			got.add(fmt.Sprint(e.Seq), e.Seq)
			time.Sleep(time.Millisecond) // work in flight when the rebalance comes
			return nil
		}
	}
	a := newApp(t, "notifier", c.env(prefix, "MARTY_KAFKA_FETCH_MAX_RECORDS=20"), recordingHandlerFunc("mailer", handler(&byA)))
	pub := newApp(t, "orders", c.env(prefix))

	const n = 600
	done := make(chan error, 1)
	// The second half waits until the second replica has joined the group,
	// so that records still arrive for the partitions it takes (on a slow
	// machine the first replica could otherwise have had them all).
	bJoined := make(chan struct{})
	ctx, cancelPub := context.WithCancel(context.Background())
	t.Cleanup(cancelPub)
	go func() {
		for i := range n {
			if i == n/2 {
				select {
				case <-bJoined:
				case <-ctx.Done():
					done <- ctx.Err()
					return
				}
			}
			if err := pub.bus.Publish(context.Background(), OrderPlaced{OrderID: fmt.Sprintf("o%d", i%16), Seq: i}); err != nil {
				done <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
		done <- nil
	}()
	eventually(t, func() bool { return got.distinct() >= 50 }, "the first replica consumes")
	b := newApp(t, "notifier", c.env(prefix, "MARTY_KAFKA_FETCH_MAX_RECORDS=20"), recordingHandlerFunc("mailer", handler(&byB)))
	eventually(t, func() bool {
		return metric(t, b.reg, "marty_kafka_rebalances_total", map[string]string{"group": "notifier_mailer"}) >= 1
	}, "the second replica joins the group")
	close(bJoined)
	eventually(t, func() bool { return byB.Load() > 0 }, "the second replica takes partitions")
	stopCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, a.Stop(stopCtx))
	require.NoError(t, <-done)
	eventually(t, func() bool { return got.distinct() == n }, "every event arrives (got %d)", got.distinct())
	require.Zero(t, got.dupes(), "no record handled twice across the rebalances")
	require.GreaterOrEqual(t, metric(t, b.reg, "marty_kafka_rebalances_total", map[string]string{"group": "notifier_mailer"}), 2.0)
	t.Logf("replica shares: a %d, b %d", byA.Load(), byB.Load())
}
