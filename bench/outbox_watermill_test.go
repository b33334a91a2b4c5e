package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/martyfx/martyfx/internal/pgtest"
)

// BenchmarkOutboxRelayWatermillSQL drains 100,000 pre-published messages
// with watermill-sql's PostgreSQL subscriber (default schema and offsets
// adapters, pgx pool), the peer of BenchmarkOutboxRelay: the handler decodes
// the JSON payload and acks. Timed from the first message received.
// -benchtime=1x.
func BenchmarkOutboxRelayWatermillSQL(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("watermill-sql-batch%d", batch), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dsn := pgtest.NewDatabase(b)
				ctx, cancel := context.WithCancel(context.Background())
				pool, err := pgxpool.New(ctx, dsn)
				if err != nil {
					b.Fatal(err)
				}
				db := wsql.BeginnerFromPgx(pool)
				logger := watermill.NopLogger{}
				schema := wsql.DefaultPostgreSQLSchema{SubscribeBatchSize: batch}
				pub, err := wsql.NewPublisher(db, wsql.PublisherConfig{SchemaAdapter: schema, AutoInitializeSchema: true}, logger)
				if err != nil {
					b.Fatal(err)
				}
				const topic = "orders"
				for i := 0; i < outboxRows; i += 1000 {
					msgs := make([]*message.Message, 1000)
					for j := range msgs {
						payload, _ := json.Marshal(newBenchEvent(i + j))
						msgs[j] = message.NewMessage(watermill.NewUUID(), payload)
					}
					if err := pub.Publish(topic, msgs...); err != nil {
						b.Fatal(err)
					}
				}
				sub, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{
					SchemaAdapter:    schema,
					OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
					InitializeSchema: true,
					PollInterval:     10 * time.Millisecond,
				}, logger)
				if err != nil {
					b.Fatal(err)
				}
				msgs, err := sub.Subscribe(ctx, topic)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				var start time.Time
				for n := 0; n < outboxRows; n++ {
					select {
					case m := <-msgs:
						if n == 0 {
							start = time.Now()
						}
						var ev benchEvent
						if err := json.Unmarshal(m.Payload, &ev); err != nil {
							b.Fatal(err)
						}
						m.Ack()
					case <-time.After(60 * time.Second):
						b.Fatalf("watermill-sql delivered %d of %d messages", n, outboxRows)
					}
				}
				elapsed := time.Since(start)
				b.StopTimer()
				cancel()
				_ = sub.Close()
				_ = pub.Close()
				pool.Close()
				b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
			}
		})
	}
}
