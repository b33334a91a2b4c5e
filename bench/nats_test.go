package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

const natsEvents = 100_000

// natsURL is MARTY_TEST_NATS_URL (the machine's server, its own process),
// else an embedded server in this process.
func natsURL(b *testing.B) string {
	if u := os.Getenv("MARTY_TEST_NATS_URL"); u != "" {
		return u
	}
	s, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

// natsTarget is a unique stream and prefix, deleted at cleanup.
func natsTarget(b *testing.B, url string) []string {
	var r [5]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	stream := "BENCH_" + id
	b.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		_ = js.DeleteStream(context.Background(), stream)
	})
	return []string{"MARTY_NATS_URL=" + url, "MARTY_NATS_STREAM=" + stream, "MARTY_NATS_SUBJECT_PREFIX=bench" + id}
}

func natsApp(b *testing.B, service string, env []string, opts ...fx.Option) *fx.App {
	b.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=" + service,
		"MARTY_DB_SLOW_QUERY_THRESHOLD=0"}, env...))
	if err != nil {
		b.Fatal(err)
	}
	app := fx.New(append([]fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module, natsjs.Module, fx.Replace(src)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return app
}

// BenchmarkNATSEndToEnd: events/s from a pre-filled Postgres outbox of
// 100,000 events, relayed to JetStream (PubAck) by one or two publisher
// apps, to a handler (that decodes) in another app consuming its durable
// consumer, every event accounted for by id; the consumer alone on a
// pre-filled stream; the transport's Publish alone. Next to them, bare JetStream
// async publish with PubAck and Nats-Msg-Id in batches of 500 (the ceiling
// of the publishing side). Postgres from MARTY_TEST_POSTGRES_DSN; NATS from
// MARTY_TEST_NATS_URL, else embedded. -benchtime=1x.
func BenchmarkNATSEndToEnd(b *testing.B) {
	for _, relays := range []int{1, 2} {
		b.Run(fmt.Sprintf("martyfx-outbox-nats-%drelay", relays), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dsn := pgtest.NewDatabase(b)
				prefillOutbox(b, dsn)
				target := natsTarget(b, natsURL(b))
				var mu sync.Mutex
				seen := make(map[string]struct{}, natsEvents)
				var handled atomic.Int64
				done := make(chan struct{})
				consumer := natsApp(b, "bench-consumer", target,
					fxevents.AsHandler(fxevents.HandlerFunc("count", func(ctx context.Context, _ benchEvent) error {
						id := fxevents.CorrelationID(ctx)
						mu.Lock()
						_, dup := seen[id]
						seen[id] = struct{}{}
						mu.Unlock()
						if !dup && handled.Add(1) == natsEvents {
							close(done)
						}
						return nil
					})))
				b.StartTimer()
				start := time.Now()
				pubs := make([]*fx.App, relays)
				var db *gorm.DB
				for r := range pubs {
					pubs[r] = natsApp(b, "bench-publisher", append([]string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn,
						"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_BATCH_SIZE=1000"}, target...), fxrepo.Module, fx.Populate(&db))
				}
				// When the relay has emptied the outbox (the publishing side).
				var relayed atomic.Int64
				go func() {
					for {
						var left int64
						if db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error == nil && left == 0 {
							relayed.Store(int64(time.Since(start)))
							return
						}
						select {
						case <-done:
							return
						case <-time.After(50 * time.Millisecond):
						}
					}
				}()
				select {
				case <-done:
				case <-time.After(5 * time.Minute):
					b.Fatalf("handled %d of %d events", handled.Load(), natsEvents)
				}
				elapsed := time.Since(start)
				if r := relayed.Load(); r > 0 {
					b.ReportMetric(natsEvents/time.Duration(r).Seconds(), "relayed/s")
				}
				b.StopTimer()
				var left int64
				if err := db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error; err != nil || left != 0 {
					b.Fatalf("outbox not empty: %d rows (%v)", left, err)
				}
				for _, a := range append(pubs, consumer) {
					stopApp(b, a)
				}
				if n := len(seen); n != natsEvents {
					b.Fatalf("handled %d distinct events, want %d", n, natsEvents)
				}
				b.ReportMetric(natsEvents/elapsed.Seconds(), "events/s")
			}
		})
	}
	b.Run("martyfx-consume", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			target := natsTarget(b, natsURL(b))
			var conn *natsjs.Conn
			pub := natsApp(b, "bench-publisher", target, fx.Populate(&conn))
			for i := 0; i < natsEvents; i += 500 {
				envs := make([]fxevents.Envelope, 500)
				for j := range envs {
					env, err := fxevents.NewEnvelope("bench", newBenchEvent(i+j), fxevents.DefaultCodec())
					if err != nil {
						b.Fatal(err)
					}
					envs[j] = env
				}
				if err := conn.Publish(context.Background(), envs...); err != nil {
					b.Fatal(err)
				}
			}
			stopApp(b, pub)
			var handled atomic.Int64
			done := make(chan struct{})
			b.StartTimer()
			start := time.Now()
			consumer := natsApp(b, "bench-consumer", target,
				fxevents.AsHandler(fxevents.HandlerFunc("count", func(context.Context, benchEvent) error {
					if handled.Add(1) == natsEvents {
						close(done)
					}
					return nil
				})))
			<-done
			elapsed := time.Since(start)
			b.StopTimer()
			stopApp(b, consumer)
			b.ReportMetric(natsEvents/elapsed.Seconds(), "events/s")
		}
	})
	b.Run("martyfx-transport-publish", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			var conn *natsjs.Conn
			app := natsApp(b, "bench-publisher", natsTarget(b, natsURL(b)), fx.Populate(&conn))
			envs := make([]fxevents.Envelope, natsEvents)
			for i := range envs {
				env, err := fxevents.NewEnvelope("bench", newBenchEvent(i), fxevents.DefaultCodec())
				if err != nil {
					b.Fatal(err)
				}
				envs[i] = env
			}
			b.StartTimer()
			start := time.Now()
			for i := 0; i < natsEvents; i += 500 {
				if err := conn.Publish(context.Background(), envs[i:i+500]...); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stopApp(b, app)
			b.ReportMetric(natsEvents/elapsed.Seconds(), "events/s")
		}
	})
	// The bare asynchronous publisher: one window of at most 4096 PubAcks
	// outstanding (nats.go's PublishAsyncMaxPending stalls the next publish
	// when it is full), no wait per message or per batch, every PubAck
	// checked through the ack and error handlers, and one wait for the
	// window to empty at the end.
	b.Run("bare-jetstream-publish-async", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			url := natsURL(b)
			target := natsTarget(b, url)
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			var acked, failed atomic.Int64
			js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
				jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { acked.Add(1) }),
				jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			stream, prefix := target[1][len("MARTY_NATS_STREAM="):], target[2][len("MARTY_NATS_SUBJECT_PREFIX="):]
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"},
				Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"order_id":"ord-00000001","customer_id":"cus-00000001","amount":1001,"currency":"EUR","sku":"SKU-0000-0000-0000-0001"}`)
			b.StartTimer()
			start := time.Now()
			for i := range natsEvents {
				m := &nats.Msg{Subject: prefix + ".bench.order_placed", Data: payload, Header: nats.Header{}}
				m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("m-%d", i))
				// A full window waits for a free place (up to 30 s on this
				// shared machine, instead of nats.go's 200 ms default).
				if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second)); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatalf("%d PubAcks outstanding after a minute", js.PublishAsyncPending())
			}
			elapsed := time.Since(start)
			b.StopTimer()
			st, _ := js.Stream(ctx, stream)
			info, _ := st.Info(ctx)
			nc.Close()
			if acked.Load() != natsEvents || failed.Load() != 0 {
				b.Fatalf("%d acked, %d failed, want %d acked", acked.Load(), failed.Load(), natsEvents)
			}
			if info == nil || info.State.Msgs != natsEvents {
				b.Fatalf("stream holds %v messages, want %d", info, natsEvents)
			}
			b.ReportMetric(natsEvents/elapsed.Seconds(), "events/s")
		}
	})
	b.Run("bare-jetstream-publish-puback", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			url := natsURL(b)
			target := natsTarget(b, url)
			nc, err := nats.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			js, _ := jetstream.New(nc)
			ctx := context.Background()
			stream, prefix := target[1][len("MARTY_NATS_STREAM="):], target[2][len("MARTY_NATS_SUBJECT_PREFIX="):]
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{prefix + ".>"},
				Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"order_id":"ord-00000001","customer_id":"cus-00000001","amount":1001,"currency":"EUR","sku":"SKU-0000-0000-0000-0001"}`)
			b.StartTimer()
			start := time.Now()
			futs := make([]jetstream.PubAckFuture, 0, 500)
			for i := 0; i < natsEvents; i += 500 {
				futs = futs[:0]
				for j := range 500 {
					m := &nats.Msg{Subject: prefix + ".bench.order_placed", Data: payload, Header: nats.Header{}}
					m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("m-%d", i+j))
					f, err := js.PublishMsgAsync(m)
					if err != nil {
						b.Fatal(err)
					}
					futs = append(futs, f)
				}
				for _, f := range futs {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Fatal(err)
					}
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			st, _ := js.Stream(ctx, stream)
			info, _ := st.Info(ctx)
			nc.Close()
			if info == nil || info.State.Msgs != natsEvents {
				b.Fatalf("stream holds %v messages, want %d", info, natsEvents)
			}
			b.ReportMetric(natsEvents/elapsed.Seconds(), "events/s")
		}
	})
}
