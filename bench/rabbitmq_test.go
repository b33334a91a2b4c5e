package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/rabbitmq"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

const rabbitPartitions = 4

// rabbitVhost makes a vhost of its own on MARTY_TEST_RABBITMQ_URL with
// rabbitmqctl (deleted at cleanup) and returns its URL.
func rabbitVhost(b *testing.B) string {
	base := os.Getenv("MARTY_TEST_RABBITMQ_URL")
	if base == "" {
		b.Skip("MARTY_TEST_RABBITMQ_URL is not set")
	}
	var r [5]byte
	_, _ = rand.Read(r[:])
	vhost := "bench-" + hex.EncodeToString(r[:])
	ctl := func(args ...string) {
		if out, err := exec.Command("rabbitmqctl", args...).CombinedOutput(); err != nil {
			b.Fatalf("rabbitmqctl %v: %v: %s", args, err, out)
		}
	}
	ctl("add_vhost", vhost)
	b.Cleanup(func() { ctl("delete_vhost", vhost) })
	u, err := url.Parse(base)
	if err != nil {
		b.Fatal(err)
	}
	ctl("set_permissions", "-p", vhost, u.User.Username(), ".*", ".*", ".*")
	u.Path = "/" + vhost
	return u.String()
}

func rabbitApp(b *testing.B, service string, env []string, opts ...fx.Option) *fx.App {
	b.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=" + service,
		"MARTY_DB_SLOW_QUERY_THRESHOLD=0", fmt.Sprintf("MARTY_RABBITMQ_PARTITIONS=%d", rabbitPartitions)}, env...))
	if err != nil {
		b.Fatal(err)
	}
	app := fx.New(append([]fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module, rabbitmq.Module, fx.Replace(src)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return app
}

// BenchmarkRabbitMQEndToEnd: events/s from a pre-filled Postgres outbox of
// 100,000 events, relayed to RabbitMQ (publisher confirms, persistent, 4
// quorum partition queues with single-active-consumer) by one publisher
// app, to a handler in another app, every event accounted for by id; next
// to it, bare amqp091-go on the same server and topology shape: the same
// events published persistent with confirms in batches of 500 to a direct
// exchange routing to 4 quorum queues by aggregate, consumed by 4
// consumers that ack each message. Postgres from MARTY_TEST_POSTGRES_DSN,
// RabbitMQ from MARTY_TEST_RABBITMQ_URL (a vhost of its own per run, made
// with rabbitmqctl). -benchtime=1x.
func BenchmarkRabbitMQEndToEnd(b *testing.B) {
	b.Run("martyfx-outbox-rabbitmq", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			dsn := pgtest.NewDatabase(b)
			prefillOutbox(b, dsn)
			target := []string{"MARTY_RABBITMQ_URL=" + rabbitVhost(b)}
			var mu sync.Mutex
			seen := make(map[string]struct{}, outboxRows)
			var handled atomic.Int64
			done := make(chan struct{})
			consumer := rabbitApp(b, "bench-consumer", target,
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
			var db *gorm.DB
			pub := rabbitApp(b, "bench-publisher", append([]string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn,
				"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_BATCH_SIZE=1000"}, target...), fxrepo.Module, fx.Populate(&db))
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("handled %d of %d events", handled.Load(), outboxRows)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			var left int64
			if err := db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error; err != nil || left != 0 {
				b.Fatalf("outbox not empty: %d rows (%v)", left, err)
			}
			stopApp(b, pub)
			stopApp(b, consumer)
			if n := len(seen); n != outboxRows {
				b.Fatalf("handled %d distinct events, want %d", n, outboxRows)
			}
			b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
		}
	})
	b.Run("bare-amqp091-confirm-publish-consume", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			conn, err := amqp.Dial(rabbitVhost(b))
			if err != nil {
				b.Fatal(err)
			}
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			if err := ch.ExchangeDeclare("bare", amqp.ExchangeDirect, true, false, false, false, nil); err != nil {
				b.Fatal(err)
			}
			for p := range rabbitPartitions {
				q := fmt.Sprintf("bare.%d", p)
				if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
					b.Fatal(err)
				}
				if err := ch.QueueBind(q, q, "bare", false, nil); err != nil {
					b.Fatal(err)
				}
			}
			if err := ch.Confirm(false); err != nil {
				b.Fatal(err)
			}
			var handled atomic.Int64
			done := make(chan struct{})
			var wg sync.WaitGroup
			for p := range rabbitPartitions {
				cch, err := conn.Channel()
				if err != nil {
					b.Fatal(err)
				}
				if err := cch.Qos(64, 0, false); err != nil {
					b.Fatal(err)
				}
				ds, err := cch.Consume(fmt.Sprintf("bare.%d", p), "", false, false, false, false, nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					for d := range ds {
						_ = d.Ack(false)
						if handled.Add(1) == outboxRows {
							close(done)
						}
					}
				})
			}
			payload := []byte(`{"order_id":"ord-00000001","customer_id":"cus-00000001","amount":1001,"currency":"EUR","sku":"SKU-0000-0000-0000-0001"}`)
			b.StartTimer()
			start := time.Now()
			dcs := make([]*amqp.DeferredConfirmation, 0, 500)
			for i := 0; i < outboxRows; i += 500 {
				dcs = dcs[:0]
				for j := range 500 {
					key := fmt.Sprintf("bare.%d", rabbitmq.Partition(fmt.Sprintf("ord-%08d", (i+j)%4096), rabbitPartitions))
					dc, err := ch.PublishWithDeferredConfirm("bare", key, false, false, amqp.Publishing{
						DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("m-%d", i+j), Type: "bench.order_placed",
						ContentType: "application/json", Body: payload,
					})
					if err != nil {
						b.Fatal(err)
					}
					dcs = append(dcs, dc)
				}
				for _, dc := range dcs {
					if !dc.Wait() {
						b.Fatal("nack")
					}
				}
			}
			select {
			case <-done:
			case <-time.After(5 * time.Minute):
				b.Fatalf("consumed %d of %d", handled.Load(), outboxRows)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			_ = conn.Close()
			wg.Wait()
			b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
		}
	})
}
