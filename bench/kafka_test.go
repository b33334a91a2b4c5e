package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/kafka"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// kafkaCluster is a kfake cluster for one run, and the env of an app on it.
func kafkaCluster(b *testing.B) (*kfake.Cluster, []string) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	var r [4]byte
	_, _ = rand.Read(r[:])
	return c, []string{"MARTY_KAFKA_BROKERS=" + strings.Join(c.ListenAddrs(), ","), "MARTY_KAFKA_TOPIC_PREFIX=bench" + hex.EncodeToString(r[:]),
		"MARTY_KAFKA_PARTITIONS=12", "MARTY_KAFKA_REPLICATION_FACTOR=1", "MARTY_KAFKA_SESSION_TIMEOUT=6s"}
}

func kafkaApp(b *testing.B, service string, env []string, opts ...fx.Option) *fx.App {
	b.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=" + service,
		"MARTY_DB_SLOW_QUERY_THRESHOLD=0"}, env...))
	if err != nil {
		b.Fatal(err)
	}
	app := fx.New(append([]fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module, kafka.Module, fx.Replace(src)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return app
}

// BenchmarkKafkaEndToEnd: events/s of 100,000 events from a pre-filled
// Postgres outbox, relayed by fxevents/kafka (idempotent producer, acks=all,
// key = aggregate id, event id and trace headers) to a handler (that
// decodes) in another app's consumer group (committing after the handler),
// every event accounted for by id; next to bare franz-go producing the
// same records (same key, value and an event id header; idempotent,
// acks=all, ProduceSync in batches of 1000) and consuming them in a
// consumer group with autocommit. Both on kfake, in this process (so the
// broker's work is in both figures). Postgres from MARTY_TEST_POSTGRES_DSN.
// -benchtime=1x.
func BenchmarkKafkaEndToEnd(b *testing.B) {
	b.Run("martyfx-outbox-kafka", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			dsn := pgtest.NewDatabase(b)
			prefillOutbox(b, dsn)
			_, target := kafkaCluster(b)
			var mu sync.Mutex
			seen := make(map[string]struct{}, outboxRows)
			var handled atomic.Int64
			done := make(chan struct{})
			consumer := kafkaApp(b, "bench-consumer", target,
				fxevents.AsHandler(fxevents.HandlerFunc("count", func(ctx context.Context, _ benchEvent) error {
					id := fxevents.CorrelationID(ctx)
					mu.Lock()
					_, dup := seen[id]
					seen[id] = struct{}{}
					mu.Unlock()
					if !dup && handled.Add(1) == outboxRows {
						close(done)
					}
					return nil
				})))
			b.StartTimer()
			start := time.Now()
			pub := kafkaApp(b, "bench-publisher", append([]string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn,
				"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_BATCH_SIZE=1000"}, target...), fxrepo.Module)
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("handled %d of %d events", handled.Load(), outboxRows)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stopApp(b, pub)
			stopApp(b, consumer)
			b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
		}
	})
	b.Run("bare-franz-go-produce-consume", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			c, target := kafkaCluster(b)
			topic := strings.TrimPrefix(target[1], "MARTY_KAFKA_TOPIC_PREFIX=") + ".bench.order_placed"
			seeds := kgo.SeedBrokers(c.ListenAddrs()...)
			admCl, err := kgo.NewClient(seeds)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := kadm.NewClient(admCl).CreateTopics(context.Background(), 12, 1, nil, topic); err != nil {
				b.Fatal(err)
			}
			admCl.Close()
			recs := make([]*kgo.Record, outboxRows)
			for i := range recs {
				ev := newBenchEvent(i)
				payload := fmt.Appendf(nil, `{"order_id":%q,"customer_id":%q,"amount":%d,"currency":%q,"sku":%q}`,
					ev.OrderID, ev.CustomerID, ev.Amount, ev.Currency, ev.SKU)
				recs[i] = &kgo.Record{Topic: topic, Key: []byte(ev.OrderID), Value: payload,
					Headers: []kgo.RecordHeader{{Key: "marty-event-id", Value: fmt.Appendf(nil, "e-%d", i)}}}
			}
			var handled atomic.Int64
			done := make(chan struct{})
			b.StartTimer()
			start := time.Now()
			cons, err := kgo.NewClient(seeds, kgo.ConsumerGroup("bare"), kgo.ConsumeTopics(topic),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				seen := make(map[string]struct{}, outboxRows)
				for {
					f := cons.PollFetches(context.Background())
					if f.IsClientClosed() {
						return
					}
					f.EachRecord(func(r *kgo.Record) {
						var ev benchEvent
						_ = json.Unmarshal(r.Value, &ev)
						id := string(r.Headers[0].Value)
						if _, dup := seen[id]; dup {
							return
						}
						seen[id] = struct{}{}
						if handled.Add(1) == outboxRows {
							close(done)
						}
					})
				}
			}()
			prod, err := kgo.NewClient(seeds, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
			if err != nil {
				b.Fatal(err)
			}
			for i := 0; i < outboxRows; i += 1000 {
				if err := prod.ProduceSync(context.Background(), recs[i:i+1000]...).FirstErr(); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("consumed %d of %d records", handled.Load(), outboxRows)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			prod.Close()
			cons.Close()
			b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
		}
	})
}
