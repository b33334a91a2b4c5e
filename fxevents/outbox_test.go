package fxevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// backend is a database the outbox tests run on.
type backend struct {
	name string
	env  []string // MARTY_DB_* of one fresh database
}

// forEachDriver runs fn on SQLite (a file) always, and on PostgreSQL (a
// fresh database) when MARTY_TEST_POSTGRES_DSN is set.
func forEachDriver(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, sqliteBackend(t))
	})
	t.Run("postgres", func(t *testing.T) {
		fn(t, pgBackend(t))
	})
}

func sqliteBackend(t *testing.T) backend {
	return backend{name: "sqlite", env: []string{"MARTY_DB_DSN=file:" + filepath.Join(t.TempDir(), "events.db")}}
}

func pgBackend(t *testing.T) backend {
	return backend{name: "postgres", env: []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + pgtest.NewDatabase(t)}}
}

type outboxApp struct {
	*testApp
	db  *gorm.DB
	uow fxrepo.UnitOfWork
}

func newOutboxApp(t *testing.T, b backend, env []string, opts ...fx.Option) *outboxApp {
	t.Helper()
	oa := &outboxApp{}
	all := append([]string{"MARTY_EVENTS_BUS=outbox", "MARTY_LOG_LEVEL=error"}, b.env...)
	opts = append(opts, fxrepo.Module, fx.Populate(&oa.db, &oa.uow))
	oa.testApp = newTestApp(t, append(all, env...), opts...)
	return oa
}

func countRows(t *testing.T, db *gorm.DB, table string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw("SELECT COUNT(*) FROM "+table).Scan(&n).Error)
	return n
}

// deliveries records what handlers received, by event id.
type deliveries struct {
	mu    sync.Mutex
	byID  map[string]int
	order map[string][]int // aggregate -> seqs in handling order
	total int
}

func newDeliveries() *deliveries {
	return &deliveries{byID: map[string]int{}, order: map[string][]int{}}
}

func (d *deliveries) handler(name string) fxevents.Handler {
	inner := fxevents.HandlerFunc(name, func(context.Context, OrderCreated) error { return nil })
	return fxevents.WrapHandler(inner, func(ctx context.Context, env fxevents.Envelope) error {
		var e OrderCreated
		if err := json.Unmarshal(env.Payload, &e); err != nil {
			return err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.byID[env.ID]++
		d.order[e.OrderID] = append(d.order[e.OrderID], e.Seq)
		d.total++
		return nil
	})
}

func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

func TestOutboxRolledBackNeverDeliveredCommittedAlways(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		got := newDeliveries()
		oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_POLL_INTERVAL=50ms"}, fxevents.AsHandler(got.handler("projector")))
		ctx := context.Background()
		boom := errors.New("business rule broken")
		err := oa.uow.Do(ctx, func(ctx context.Context) error {
			require.NoError(t, oa.bus.Publish(ctx, OrderCreated{OrderID: "rolled-back", Seq: 1}))
			return boom
		})
		require.ErrorIs(t, err, boom)

		tctx, parent := oa.tp.Tracer("test").Start(ctx, "POST /orders")
		require.NoError(t, oa.uow.Do(tctx, func(ctx context.Context) error {
			return oa.bus.Publish(ctx, OrderCreated{OrderID: "committed", Seq: 1}, OrderCreated{OrderID: "committed", Seq: 2})
		}))
		parent.End()
		eventually(t, func() bool { return got.count() == 2 }, "the committed events are delivered")
		time.Sleep(200 * time.Millisecond) // several poll rounds
		got.mu.Lock()
		require.Equal(t, map[string][]int{"committed": {1, 2}}, got.order, "the rolled-back event never is")
		got.mu.Unlock()
		eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox") == 0 }, "delivered rows are deleted")

		// The handler span continues the publisher's trace through the table.
		eventually(t, func() bool {
			n := 0
			for _, s := range oa.spans.Ended() {
				if s.Name() == "process orders.order_created" {
					n++
				}
			}
			return n == 2
		}, "handler spans")
		var publishIDs []trace.SpanID
		var relayLinks int
		for _, s := range oa.spans.Ended() {
			switch s.Name() {
			case "publish orders.order_created":
				if s.Parent().SpanID() == parent.SpanContext().SpanID() { // not the rolled-back one
					require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
					publishIDs = append(publishIDs, s.SpanContext().SpanID())
				}
			case "relay marty_outbox":
				relayLinks += len(s.Links())
			}
		}
		require.Len(t, publishIDs, 2)
		for _, s := range oa.spans.Ended() {
			if s.Name() == "process orders.order_created" {
				require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID())
				require.Contains(t, publishIDs, s.Parent().SpanID())
			}
		}
		require.Equal(t, 2, relayLinks, "the relay span links to both publishers")
	})
}

func TestOutboxRequireTx(t *testing.T) {
	t.Parallel()
	oa := newOutboxApp(t, sqliteBackend(t), []string{"MARTY_EVENTS_REQUIRE_TX=true"})
	err := oa.bus.Publish(context.Background(), OrderCreated{OrderID: "x"})
	require.ErrorIs(t, err, fxevents.ErrNoTransaction)
	require.NoError(t, oa.uow.Do(context.Background(), func(ctx context.Context) error {
		return oa.bus.Publish(ctx, OrderCreated{OrderID: "x"})
	}))
}

func TestOutboxRetriesWithGrowingDelaysThenDeadThenRedrive(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		var mu sync.Mutex
		var at []time.Time
		var healthy atomic.Bool
		oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_POLL_INTERVAL=20ms", "MARTY_EVENTS_MAX_ATTEMPTS=4",
			"MARTY_EVENTS_BACKOFF_INITIAL=40ms", "MARTY_EVENTS_BACKOFF_MAX=1s"},
			fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(_ context.Context, e OrderCreated) error {
				mu.Lock()
				defer mu.Unlock()
				at = append(at, time.Now())
				if healthy.Load() {
					return nil
				}
				return fmt.Errorf("smtp down (attempt %d)", len(at))
			})))
		ctx := context.Background()
		require.NoError(t, oa.bus.Publish(ctx, OrderCreated{OrderID: "o1", Seq: 7}))
		eventually(t, func() bool {
			return countRows(t, oa.db, "marty_outbox_dead") == 1 && countRows(t, oa.db, "marty_outbox") == 0
		}, "moved to the dead table after the max")
		mu.Lock()
		require.Len(t, at, 4)
		requireBackoffGaps(t, at, 40*time.Millisecond)
		mu.Unlock()
		require.Equal(t, 1.0, metric(t, oa.reg, "marty_outbox_dead_total", nil))
		require.Equal(t, 3.0, metric(t, oa.reg, "marty_outbox_failed_total", nil))

		resp, err := http.Get(oa.admin.URL + "/events/dead")
		require.NoError(t, err)
		var list struct {
			DeadLetters []struct {
				ID, Handler, Error string
				Attempts           int
			} `json:"dead_letters"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
		resp.Body.Close()
		require.Len(t, list.DeadLetters, 1)
		require.Equal(t, "mailer", list.DeadLetters[0].Handler)
		require.Equal(t, "smtp down (attempt 4)", list.DeadLetters[0].Error)
		require.Equal(t, 4, list.DeadLetters[0].Attempts)

		healthy.Store(true)
		resp, err = http.Post(oa.admin.URL+"/events/dead/"+list.DeadLetters[0].ID+"/retry", "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		eventually(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(at) == 5
		}, "re-drive delivers it")
		eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox") == 0 }, "and it leaves the outbox")
		require.Zero(t, countRows(t, oa.db, "marty_outbox_dead"))
		resp, err = http.Post(oa.admin.URL+"/events/dead/"+list.DeadLetters[0].ID+"/retry", "", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
}

func TestOutboxRetentionPurgesDeliveredAndInboxRows(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		var handled atomic.Int32
		oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_POLL_INTERVAL=50ms", "MARTY_EVENTS_RETENTION=2s"},
			fxevents.AsHandler(fxevents.Idempotent(fxevents.HandlerFunc("counter", func(context.Context, OrderCreated) error {
				handled.Add(1)
				return nil
			}))))
		require.NoError(t, oa.bus.Publish(context.Background(), OrderCreated{OrderID: "a"}, OrderCreated{OrderID: "b"}))
		eventually(t, func() bool { return handled.Load() == 2 }, "delivered")
		eventually(t, func() bool {
			var kept int64
			require.NoError(t, oa.db.Raw("SELECT COUNT(*) FROM marty_outbox WHERE delivered_at IS NOT NULL").Scan(&kept).Error)
			return kept == 2 && countRows(t, oa.db, "marty_inbox") == 2
		}, "delivered rows and inbox rows are kept for the retention")
		// Maintenance backs off to 20 times its last pass (maintainDelay),
		// which on a loaded machine is many seconds: a generous bound.
		require.Eventually(t, func() bool {
			return countRows(t, oa.db, "marty_outbox") == 0 && countRows(t, oa.db, "marty_inbox") == 0
		}, time.Minute, 10*time.Millisecond, "and purged after it")
	})
}

func TestOutboxPendingAndLagMetricsAndCheck(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	oa := newOutboxApp(t, sqliteBackend(t), []string{"MARTY_EVENTS_POLL_INTERVAL=50ms", "MARTY_EVENTS_LAG_ALERT=200ms"},
		fxevents.AsHandler(fxevents.HandlerFunc("slow", func(ctx context.Context, _ OrderCreated) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})))
	require.NoError(t, oa.bus.Publish(context.Background(), OrderCreated{OrderID: "a", Seq: 1}, OrderCreated{OrderID: "a", Seq: 2}))
	eventually(t, func() bool { return metric(t, oa.reg, "marty_outbox_pending", nil) == 2 }, "pending gauge")
	eventually(t, func() bool { return metric(t, oa.reg, "marty_outbox_lag_seconds", nil) > 0.2 }, "lag grows while the handler is stuck")
	var check func(context.Context) error
	for _, c := range oa.checks {
		if c.Name == "events" {
			require.False(t, c.Critical)
			check = c.Func
		}
	}
	require.ErrorContains(t, check(context.Background()), "outbox lag")
	require.Len(t, oa.rules, 1)
	require.Equal(t, "MartyOutboxLagHigh", oa.rules[0].Name)
	require.Equal(t, "marty_outbox_lag_seconds", oa.rules[0].Metric)
	require.InDelta(t, 0.2, oa.rules[0].Threshold, 1e-9)
	close(release)
	eventually(t, func() bool {
		return metric(t, oa.reg, "marty_outbox_pending", nil) == 0 && metric(t, oa.reg, "marty_outbox_lag_seconds", nil) == 0
	}, "drained")
	require.NoError(t, check(context.Background()))
	require.Equal(t, 2.0, metric(t, oa.reg, "marty_outbox_delivered_total", nil))
	require.Positive(t, metric(t, oa.reg, "marty_outbox_claim_batch_size", nil))
}

func TestOutboxRedriveAll(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	var handled atomic.Int32
	oa := newOutboxApp(t, sqliteBackend(t), []string{"MARTY_EVENTS_POLL_INTERVAL=20ms", "MARTY_EVENTS_MAX_ATTEMPTS=1"},
		fxevents.AsHandler(fxevents.HandlerFunc("h", func(context.Context, OrderCreated) error {
			if !healthy.Load() {
				return errors.New("down")
			}
			handled.Add(1)
			return nil
		})))
	require.NoError(t, oa.bus.Publish(context.Background(), OrderCreated{OrderID: "a"}, OrderCreated{OrderID: "b"}))
	eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox_dead") == 2 }, "both dead")
	healthy.Store(true)
	resp, err := http.Post(oa.admin.URL+"/events/dead/retry", "", nil)
	require.NoError(t, err)
	var body struct{ Redriven int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	resp.Body.Close()
	require.Equal(t, 2, body.Redriven)
	eventually(t, func() bool { return handled.Load() == 2 && countRows(t, oa.db, "marty_outbox") == 0 }, "re-driven")
	require.Zero(t, countRows(t, oa.db, "marty_outbox_dead"))
}

// The gauges' pass (a COUNT over the pending rows) backs off when it gets
// slow, as with a backlog of millions of rows during an outage.
func TestMaintenanceBacksOffWhenCountingIsSlow(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.Second, fxevents.MaintainDelay(time.Second, 5*time.Millisecond))
	require.Equal(t, 10*time.Second, fxevents.MaintainDelay(time.Second, 500*time.Millisecond))
}
