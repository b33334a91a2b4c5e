package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

const outboxRows = 100_000

// outboxApp starts an app with fxrepo on dsn and the outbox bus.
func outboxApp(b *testing.B, dsn string, env []string, opts ...fx.Option) (*fx.App, fxevents.Bus, fxrepo.UnitOfWork, *gorm.DB) {
	b.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=bench",
		"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn, "MARTY_EVENTS_BUS=outbox", "MARTY_DB_SLOW_QUERY_THRESHOLD=0"}, env...))
	if err != nil {
		b.Fatal(err)
	}
	var bus fxevents.Bus
	var uow fxrepo.UnitOfWork
	var db *gorm.DB
	app := fx.New(append([]fx.Option{fx.NopLogger, fxcore.Module, fxrepo.Module, fxevents.Module, fx.Replace(src),
		fx.Populate(&bus, &uow, &db)}, opts...)...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Start(ctx); err != nil {
		b.Fatal(err)
	}
	return app, bus, uow, db
}

func stopApp(b *testing.B, app *fx.App) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}

// prefillOutbox writes outboxRows events with the relay off, 1000 per transaction.
func prefillOutbox(b *testing.B, dsn string) {
	app, bus, uow, _ := outboxApp(b, dsn, []string{"MARTY_EVENTS_RELAY=false"})
	defer stopApp(b, app)
	for i := 0; i < outboxRows; i += 1000 {
		evs := make([]fxevents.Event, 1000)
		for j := range evs {
			evs[j] = newBenchEvent(i + j)
		}
		if err := uow.Do(context.Background(), func(ctx context.Context) error { return bus.Publish(ctx, evs...) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutboxRelay drains a pre-filled outbox of 100,000 events to a
// no-op handler (that decodes), with one and two relays (apps with their own
// pools), next to a bare pgx SKIP LOCKED loop over a plain table of the same
// rows (the ceiling). Postgres from MARTY_TEST_POSTGRES_DSN. -benchtime=1x.
// martyfx is timed from the first handled event (app start-up excluded);
// the bare loop from its first claim.
func BenchmarkOutboxRelay(b *testing.B) {
	for _, relays := range []int{1, 2} {
		for _, decode := range []bool{false, true} {
			name := fmt.Sprintf("martyfx-%drelay", relays)
			if decode {
				name += "-decode"
			}
			b.Run(name, func(b *testing.B) {
				for range b.N {
					b.StopTimer()
					dsn := pgtest.NewDatabase(b)
					prefillOutbox(b, dsn)
					var handled atomic.Int64
					var first atomic.Int64
					done := make(chan struct{})
					count := func() {
						n := handled.Add(1)
						if n == 1 {
							first.Store(time.Now().UnixNano())
						}
						if n == outboxRows {
							close(done)
						}
					}
					// The no-op handler takes the envelope as it is, like the
					// bare loop takes its rows; -decode decodes each payload
					// into a benchEvent first (HandlerFunc), as a typed
					// handler does.
					var h fxevents.Handler = noopHandler{count}
					if decode {
						h = fxevents.HandlerFunc("noop", func(context.Context, benchEvent) error { count(); return nil })
					}
					b.StartTimer()
					apps := make([]*fx.App, relays)
					for r := range apps {
						apps[r], _, _, _ = outboxApp(b, dsn, []string{"MARTY_EVENTS_BATCH_SIZE=1000"}, fxevents.AsHandler(h))
					}
					for first.Load() == 0 {
						time.Sleep(time.Millisecond)
					}
					b0, i0 := cpuTicks()
					p0 := procTicks()
					<-done
					b1, i1 := cpuTicks()
					p1 := procTicks()
					reportCPU(b, b1-b0, i1-i0, p1-p0)
					// From the first handled event: app start-up is not relaying.
					elapsed := time.Since(time.Unix(0, first.Load()))
					b.StopTimer()
					for _, a := range apps {
						stopApp(b, a)
					}
					b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
				}
			})
		}
	}
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("bare-pgx-skiplocked-%dworker", workers), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				dsn := pgtest.NewDatabase(b)
				ctx := context.Background()
				pool, err := pgxpool.New(ctx, dsn)
				if err != nil {
					b.Fatal(err)
				}
				_, err = pool.Exec(ctx, `CREATE TABLE q (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL);
					INSERT INTO q (payload) SELECT convert_to(repeat('x', 100) || g, 'UTF8') FROM generate_series(1, 100000) g`)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				b0, i0 := cpuTicks()
				start := time.Now()
				var wg sync.WaitGroup
				var total atomic.Int64
				for range workers {
					wg.Go(func() {
						for {
							n, err := bareClaim(ctx, pool)
							if err != nil {
								panic(err)
							}
							if n == 0 {
								return
							}
							total.Add(int64(n))
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b1, i1 := cpuTicks()
				reportCPU(b, b1-b0, i1-i0, -1)
				b.StopTimer()
				pool.Close()
				if total.Load() != outboxRows {
					b.Fatalf("drained %d rows", total.Load())
				}
				b.ReportMetric(outboxRows/elapsed.Seconds(), "events/s")
			}
		})
	}
}

// noopHandler receives the bench events as envelopes and only counts them.
type noopHandler struct{ count func() }

func (noopHandler) Name() string                                      { return "noop" }
func (noopHandler) EventTypes() []string                              { return []string{benchEvent{}.EventType()} }
func (h noopHandler) Handle(context.Context, fxevents.Envelope) error { h.count(); return nil }

func bareClaim(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, "SELECT id, payload FROM q ORDER BY id LIMIT 1000 FOR UPDATE SKIP LOCKED")
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			var p []byte
			if err := rows.Scan(&id, &p); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		n = len(ids)
		if n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, "DELETE FROM q WHERE id = ANY($1)", ids)
		return err
	})
	return n, err
}

// BenchmarkOutboxLatency measures commit-to-handler latency through NOTIFY
// with a 10 s poll interval: 500 events, one transaction each, one at a time.
func BenchmarkOutboxLatency(b *testing.B) {
	for b.Loop() {
		dsn := pgtest.NewDatabase(b)
		got := make(chan time.Time, 1)
		app, bus, uow, _ := outboxApp(b, dsn, []string{"MARTY_EVENTS_POLL_INTERVAL=10s"},
			fxevents.AsHandler(fxevents.HandlerFunc("latency", func(context.Context, benchEvent) error {
				got <- time.Now()
				return nil
			})))
		time.Sleep(200 * time.Millisecond) // LISTEN is up
		lat := make([]time.Duration, 0, 500)
		for i := range 500 {
			if err := uow.Do(context.Background(), func(ctx context.Context) error { return bus.Publish(ctx, newBenchEvent(i)) }); err != nil {
				b.Fatal(err)
			}
			committed := time.Now()
			select {
			case at := <-got:
				lat = append(lat, at.Sub(committed))
			case <-time.After(15 * time.Second):
				b.Fatal("not delivered")
			}
		}
		stopApp(b, app)
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkOutboxPublishCost measures a transaction inserting one row, with
// and without an outbox Publish of one event in it (relay off).
func BenchmarkOutboxPublishCost(b *testing.B) {
	dsn := pgtest.NewDatabase(b)
	app, bus, uow, db := outboxApp(b, dsn, []string{"MARTY_EVENTS_RELAY=false"})
	defer stopApp(b, app)
	if err := db.Exec("CREATE TABLE items (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL)").Error; err != nil {
		b.Fatal(err)
	}
	insert := func(ctx context.Context) error {
		return fxrepo.DB(ctx, db).Exec("INSERT INTO items (name) VALUES (?)", "widget").Error
	}
	b.Run("tx-one-insert", func(b *testing.B) {
		for b.Loop() {
			if err := uow.Do(context.Background(), insert); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tx-one-insert+publish", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if err := uow.Do(context.Background(), func(ctx context.Context) error {
				if err := insert(ctx); err != nil {
					return err
				}
				return bus.Publish(ctx, newBenchEvent(i))
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
