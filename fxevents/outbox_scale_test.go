package fxevents_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
)

func TestOutboxThreeRelaysDeliverEveryEventOnceInAggregateOrder(t *testing.T) {
	t.Parallel()
	b := pgBackend(t)
	const aggregates, perAggregate = 100, 100 // 10,000 events
	var mu sync.Mutex
	seen := map[string]int{}
	order := map[string][]int{}
	byReplica := map[int]int{}
	replicas := make([]*outboxApp, 3)
	for r := range replicas {
		h := fxevents.WrapHandler(fxevents.HandlerFunc("projector", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error {
				e, err := decodeOrder(env)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				seen[env.ID]++
				order[e.OrderID] = append(order[e.OrderID], e.Seq)
				byReplica[r]++
				return nil
			})
		replicas[r] = newOutboxApp(t, b, []string{"MARTY_EVENTS_POLL_INTERVAL=200ms", "MARTY_EVENTS_BATCH_SIZE=100",
			"MARTY_EVENTS_RELAY_WORKERS=3", "MARTY_EVENTS_PARTITIONS=16", "MARTY_DB_MAX_OPEN_CONNS=8"}, fxevents.AsHandler(h))
	}
	// Publishers on two replicas, each owning half the aggregates, while
	// all three relay.
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Go(func() {
			for seq := range perAggregate {
				evs := make([]fxevents.Event, 0, aggregates/2)
				for a := p; a < aggregates; a += 2 {
					evs = append(evs, OrderCreated{OrderID: fmt.Sprint("agg-", a), Seq: seq})
				}
				pub := replicas[p]
				require.NoError(t, pub.uow.Do(context.Background(), func(ctx context.Context) error {
					return pub.bus.Publish(ctx, evs...)
				}))
			}
		})
	}
	wg.Wait()
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == aggregates*perAggregate
	}, 60*time.Second, 20*time.Millisecond, "every event delivered")
	time.Sleep(300 * time.Millisecond) // would a duplicate still come?
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		require.Equal(t, 1, n, "event %s delivered %d times", id, n)
	}
	for agg, seqs := range order {
		require.True(t, slices.IsSorted(seqs), "aggregate %s out of order", agg)
		require.Len(t, seqs, perAggregate)
	}
	for r := range replicas {
		require.Positive(t, byReplica[r], "replica %d relayed some: %v", r, byReplica)
	}
	t.Logf("events per replica: %v", byReplica)
	require.Zero(t, countRows(t, replicas[0].db, "marty_outbox"))
}

func decodeOrder(env fxevents.Envelope) (OrderCreated, error) {
	ev, err := fxevents.NewRegistry(OrderCreated{})
	if err != nil {
		return OrderCreated{}, err
	}
	e, err := ev.Decode(env, fxevents.DefaultCodec())
	if err != nil {
		return OrderCreated{}, err
	}
	return e.(OrderCreated), nil
}

// effectsHandler is Idempotent and inserts one effects row per event.
func effectsHandler(db *gorm.DB, delay time.Duration) fxevents.Handler {
	return fxevents.Idempotent(fxevents.HandlerFunc("effects", func(ctx context.Context, e OrderCreated) error {
		time.Sleep(delay)
		return fxrepo.DB(ctx, db).Exec("INSERT INTO effects (order_id) VALUES (?)", e.OrderID).Error
	}))
}

// TestRelaySubprocess is the relay process TestOutboxRelayKilledMidBatch
// kills; it runs only when FXEVENTS_RELAY_SUBPROCESS is set.
func TestRelaySubprocess(t *testing.T) {
	t.Parallel()
	if os.Getenv("FXEVENTS_RELAY_SUBPROCESS") == "" {
		t.Skip("run by TestOutboxRelayKilledMidBatchLosesNothing")
	}
	env := strings.Split(os.Getenv("FXEVENTS_RELAY_ENV"), "\n")
	src := mustSource(t, env)
	app := fx.New(fx.NopLogger, coreModule(), fxevents.Module, fxrepo.Module, fx.Replace(src),
		fxevents.AsHandler(func(db *gorm.DB) fxevents.Handler { return effectsHandler(db, 5*time.Millisecond) }))
	require.NoError(t, app.Start(context.Background()))
	select {} // until killed
}

func TestOutboxRelayKilledMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		const n = 300
		env := append([]string{"MARTY_EVENTS_BUS=outbox", "MARTY_LOG_LEVEL=error", "MARTY_EVENTS_PARTITIONS=1",
			"MARTY_EVENTS_BATCH_SIZE=1000", "MARTY_EVENTS_POLL_INTERVAL=50ms"}, b.env...)
		// Publish with the relay off.
		pub := newOutboxApp(t, b, []string{"MARTY_EVENTS_PARTITIONS=1", "MARTY_EVENTS_RELAY=false"})
		require.NoError(t, pub.db.Exec("CREATE TABLE effects (order_id TEXT NOT NULL)").Error)
		evs := make([]fxevents.Event, n)
		for i := range evs {
			evs[i] = OrderCreated{OrderID: fmt.Sprint("o", i), Seq: i}
		}
		require.NoError(t, pub.uow.Do(context.Background(), func(ctx context.Context) error { return pub.bus.Publish(ctx, evs...) }))

		cmd := exec.Command(os.Args[0], "-test.run=^TestRelaySubprocess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FXEVENTS_RELAY_SUBPROCESS=1", "FXEVENTS_RELAY_ENV="+strings.Join(env, "\n"))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		require.Eventually(t, func() bool { return countRows(t, pub.db, "effects") >= 50 }, 30*time.Second, 5*time.Millisecond,
			"the subprocess relays: %s", out)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		before := countRows(t, pub.db, "effects")
		require.Less(t, before, int64(n), "killed mid-batch")
		require.Equal(t, int64(n), countRows(t, pub.db, "marty_outbox"), "the batch was not marked delivered")

		// A new relay delivers everything; the inbox absorbs the redelivered ones.
		var deliveries atomic.Int64
		newOutboxApp(t, b, []string{"MARTY_EVENTS_PARTITIONS=1", "MARTY_EVENTS_POLL_INTERVAL=50ms"},
			fxevents.AsHandlerMiddleware(func(h fxevents.Handler) fxevents.Handler {
				return fxevents.WrapHandler(h, func(ctx context.Context, env fxevents.Envelope) error {
					deliveries.Add(1)
					return h.Handle(ctx, env)
				})
			}, 0),
			fxevents.AsHandler(func(db *gorm.DB) fxevents.Handler { return effectsHandler(db, 0) }))
		eventually(t, func() bool { return countRows(t, pub.db, "marty_outbox") == 0 }, "every row delivered after the restart")
		require.Equal(t, int64(n), countRows(t, pub.db, "effects"), "each event took effect exactly once")
		var distinct int64
		require.NoError(t, pub.db.Raw("SELECT COUNT(DISTINCT order_id) FROM effects").Scan(&distinct).Error)
		require.Equal(t, int64(n), distinct)
		require.Equal(t, int64(n), deliveries.Load(), "the restarted relay saw every event again...")
		require.Positive(t, before, "...including the ones the killed relay had applied, which the inbox skipped")
	})
}

func listenerPID(t *testing.T, conn *pgx.Conn) int {
	var pid int
	err := conn.QueryRow(context.Background(),
		"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN marty_outbox'").Scan(&pid)
	if err != nil {
		return 0
	}
	return pid
}

func TestOutboxNotifyWakesTheRelayAndSurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	b := pgBackend(t)
	got := make(chan time.Time, 100)
	// With an hour between polls, a delivery within the test can only come
	// from NOTIFY waking the relay.
	oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_POLL_INTERVAL=1h"},
		fxevents.AsHandler(fxevents.HandlerFunc("notify", func(context.Context, OrderCreated) error {
			got <- time.Now()
			return nil
		})))
	dsn := strings.TrimPrefix(b.env[1], "MARTY_DB_DSN=")
	conn, err := pgx.Connect(context.Background(), dsn)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(context.Background())) }()
	eventually(t, func() bool { return listenerPID(t, conn) != 0 }, "the relay listens")
	time.Sleep(100 * time.Millisecond) // the relay's first poll is over

	publish := func() time.Duration {
		t.Helper()
		// Timed from the start of the transaction: the relay may hand the
		// event to the handler before Do has returned from its commit, so
		// a clock read after Do could come after the delivery.
		var began time.Time
		require.Eventually(t, func() bool {
			began = time.Now()
			err := oa.uow.Do(context.Background(), func(ctx context.Context) error { return oa.bus.Publish(ctx, OrderCreated{OrderID: "n"}) })
			return err == nil
		}, 10*time.Second, 50*time.Millisecond, "publish (the pool replaces terminated connections)")
		select {
		case at := <-got:
			return at.Sub(began)
		case <-time.After(30 * time.Second):
			t.Fatal("not delivered within 30s with an hour between polls: NOTIFY did not wake the relay")
			return 0
		}
	}
	latency := publish()
	t.Logf("publish to handler via NOTIFY: %s", latency)

	// Kill every connection the app has, the LISTEN one included.
	old := listenerPID(t, conn)
	_, err = conn.Exec(context.Background(),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
	require.NoError(t, err)
	eventually(t, func() bool { p := listenerPID(t, conn); return p != 0 && p != old }, "the relay listens again")
	time.Sleep(100 * time.Millisecond)
	latency = publish()
	t.Logf("after the reconnect: %s", latency)
}

// The claim query must read about a batch of rows whatever the outbox
// holds: on a freshly filled table without statistics it merges one
// ordered index scan per partition (no bitmap scan, no sort of every
// pending row of the partitions, which "part IN (...) ORDER BY seq" gets),
// and those scans stop once the batch is complete. The relay's
// transaction settings end with the transaction.
func TestOutboxClaimReadsABatchNotThePartitions(t *testing.T) {
	t.Parallel()
	b := pgBackend(t)
	oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_RELAY=false"})
	for i := 0; i < 20_000; i += 1000 {
		evs := make([]fxevents.Event, 1000)
		for j := range evs {
			evs[j] = OrderCreated{OrderID: fmt.Sprint("agg-", (i+j)%997), Seq: i + j}
		}
		require.NoError(t, oa.uow.Do(context.Background(), func(ctx context.Context) error { return oa.bus.Publish(ctx, evs...) }))
	}
	conn, err := pgx.Connect(context.Background(), strings.TrimPrefix(b.env[1], "MARTY_DB_DSN="))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(context.Background())) }()
	ctx := context.Background()

	const batch, parts = 500, 16 // 20,000 rows: ~5,000 in these 16 of 64 partitions
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, fxevents.RelayTxSettings)
	require.NoError(t, err)
	args := make([]any, parts)
	for i := range args {
		args[i] = int32(i * 4)
	}
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "+fxevents.ClaimQuery(parts, batch), args...)
	require.NoError(t, err)
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	text := strings.Join(plan, "\n")
	require.Contains(t, text, "Merge Append", text)
	read := 0
	for _, line := range plan {
		l := strings.TrimLeft(line, " ->")
		require.False(t, strings.HasPrefix(l, "Sort (") || strings.HasPrefix(l, "Incremental Sort") || strings.HasPrefix(l, "Bitmap"),
			"no sort or bitmap scan:\n%s", text)
		if strings.HasPrefix(l, "Index Scan using marty_outbox_pending") {
			var n, loops int
			_, stats, ok := strings.Cut(l, "(actual rows=")
			require.True(t, ok, "no actual rows in the plan line %q", line)
			_, err := fmt.Sscanf(stats, "%d loops=%d)", &n, &loops)
			require.NoError(t, err, line)
			read += n
		}
	}
	require.Greater(t, read, 0, text)
	require.LessOrEqual(t, read, batch+parts, "the partition scans stop with the batch:\n%s", text)
	require.NoError(t, tx.Commit(ctx))

	var sync string
	require.NoError(t, conn.QueryRow(ctx, "SELECT current_setting('synchronous_commit')").Scan(&sync))
	require.Equal(t, "on", sync, "the relay's settings ended with its transaction")
}
