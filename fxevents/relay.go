package fxevents

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxrepo"
)

// partitionLockClass is the first key of the advisory locks that make a
// relay worker the only one relaying an outbox partition ("mout").
const partitionLockClass = 0x6d6f7574

// relay delivers marty_outbox rows. The ordering design:
//
//   - every row has a partition, hash(aggregate_id) % Partitions, so all of
//     an aggregate's events share one partition;
//   - on Postgres a worker relays a partition only inside a transaction
//     holding pg_try_advisory_xact_lock(class, partition): across every
//     replica at most one worker relays a partition at a time, and the lock
//     goes with the transaction (a killed relay or a terminated connection
//     releases it, and its uncommitted deletions roll back); a transaction
//     locks a share of the pending partitions (Partitions / RelayWorkers);
//   - the worker reads its partitions' pending rows in seq (publish) order
//     and handles them in that order; once a row of an aggregate
//     fails or is not due yet (backing off), the aggregate's later rows are
//     left for a later pass, so they never overtake it;
//   - a row is deleted (or marked delivered) in the same transaction, after
//     its handlers or the transport succeeded: a crash before the commit
//     means the rows are delivered again (at least once; the inbox makes
//     the effect exactly-once).
//
// Workers of different partitions run in parallel, on any replica. SQLite
// has a single writer: there one relay worker per process reads due rows,
// handles them and then deletes them in a short transaction (run one
// relaying process per SQLite file).
type relay struct {
	d         *Dispatcher
	db        *gorm.DB
	cfg       Config
	pg        bool
	dsn       string
	transport Transport
	log       *zap.Logger
	m         *relayMetrics

	wakes     []chan struct{}
	runCtx    context.Context // ends when stop begins: no new batches
	runCancel context.CancelFunc
	workCtx   context.Context // ends at the stop deadline: abort the batch in flight
	workStop  context.CancelFunc
	wg        sync.WaitGroup
	lag       atomic.Uint64 // float64 bits, seconds
	listening atomic.Bool
	outage    atomic.Int32 // consecutive batches the transport was unavailable for
}

type relayMetrics struct {
	delivered prometheus.Counter
	failed    prometheus.Counter
	dead      prometheus.Counter
	batch     prometheus.Histogram
	pending   prometheus.Gauge
	lag       prometheus.Gauge
}

func newRelayMetrics(reg prometheus.Registerer) (*relayMetrics, error) {
	m := &relayMetrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "marty_outbox_delivered_total",
			Help: "Outbox rows delivered (every handler succeeded or the transport accepted them)."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "marty_outbox_failed_total",
			Help: "Outbox delivery attempts that failed and were scheduled again."}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "marty_outbox_dead_total",
			Help: "Dead letters written to marty_outbox_dead."}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "marty_outbox_claim_batch_size",
			Help: "Rows claimed per relay batch.", Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000}}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "marty_outbox_pending",
			Help: "Outbox rows not delivered yet."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "marty_outbox_lag_seconds",
			Help: "Age of the oldest due outbox row (0 when none is due)."}),
	}
	for _, c := range []prometheus.Collector{m.delivered, m.failed, m.dead, m.batch, m.pending, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (r *relay) wakeAll() {
	for _, w := range r.wakes {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (r *relay) start() {
	r.runCtx, r.runCancel = context.WithCancel(context.Background())
	r.workCtx, r.workStop = context.WithCancel(context.Background())
	workers := r.cfg.RelayWorkers
	if !r.pg {
		workers = 1
	}
	r.wakes = make([]chan struct{}, workers)
	for i := range r.wakes {
		r.wakes[i] = make(chan struct{}, 1)
		wake := r.wakes[i]
		r.wg.Go(func() { r.work(wake) })
	}
	if r.pg && r.dsn != "" {
		r.wg.Go(r.listen)
	}
	r.wg.Go(r.maintain)
}

// stop ends the loops, lets the batches in flight finish until ctx ends,
// then aborts them (their rows are delivered again later).
func (r *relay) stop(ctx context.Context) error {
	r.runCancel()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.workStop()
		return nil
	case <-ctx.Done():
		r.workStop()
		<-done
		return fmt.Errorf("fxevents: stop relay: %w", ctx.Err())
	}
}

func (r *relay) work(wake chan struct{}) {
	errWait := 100 * time.Millisecond
	for r.runCtx.Err() == nil {
		n, nextDue, err := r.claimOnce()
		if err != nil {
			if r.runCtx.Err() != nil {
				return
			}
			r.log.Warn("outbox relay batch failed; retrying", zap.Duration("backoff", errWait), zap.Error(err))
			r.sleep(wake, errWait)
			errWait = min(errWait*2, 5*time.Second)
			continue
		}
		errWait = 100 * time.Millisecond
		if n > 0 {
			continue
		}
		wait := r.cfg.PollInterval
		if nextDue > 0 {
			wait = min(wait, max(time.Until(time.UnixMicro(nextDue)), time.Millisecond))
		}
		r.sleep(wake, wait)
	}
}

func (r *relay) sleep(wake chan struct{}, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.runCtx.Done():
	case <-wake:
	case <-t.C:
	}
}

// listen keeps a LISTEN connection (pgx, outside the pool) and wakes the
// workers on every NOTIFY; polling covers the gaps while it reconnects.
func (r *relay) listen() {
	wait := 100 * time.Millisecond
	for r.runCtx.Err() == nil {
		err := r.listenOnce()
		r.listening.Store(false)
		if r.runCtx.Err() != nil {
			return
		}
		r.log.Warn("outbox LISTEN connection lost; polling until it is back", zap.Duration("retry_in", wait), zap.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-r.runCtx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (r *relay) listenOnce() error {
	conn, err := pgx.Connect(r.runCtx, r.dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", fxrepo.RedactError(err, r.dsn))
	}
	// The loop below ends with the error that matters; closing a broken
	// connection adds nothing to it.
	defer func() { _ = conn.Close(context.Background()) }()
	if _, err := conn.Exec(r.runCtx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("LISTEN: %w", err)
	}
	r.listening.Store(true)
	r.wakeAll() // catch up with what was published while not listening
	for {
		if _, err := conn.WaitForNotification(r.runCtx); err != nil {
			return err
		}
		r.wakeAll()
	}
}

// outboxRow is a claimed marty_outbox row.
type outboxRow struct {
	seq         int64
	env         Envelope
	attempts    int
	nextAttempt int64
	done        string
	only        string
}

const rowColumns = "seq, id, aggregate_id, type, source, payload, metadata, occurred_at, attempts, next_attempt_at, done_handlers, only_handler"

// rowScanner is what readRows needs of *sql.Rows and pgx.Rows.
type rowScanner interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// readRows reads claimed rows (rowColumns, in that order). Each row is
// scanned in place into the slice, through one set of scan targets, so a
// row costs the allocations of its column values and nothing more.
func readRows(rows rowScanner, capHint int) ([]outboxRow, error) {
	out := make([]outboxRow, 0, capHint)
	var meta string
	var occurred int64
	var o *outboxRow
	dest := make([]any, 12)
	for rows.Next() {
		out = append(out, outboxRow{})
		o = &out[len(out)-1]
		dest[0], dest[1], dest[2], dest[3], dest[4], dest[5] = &o.seq, &o.env.ID, &o.env.AggregateID, &o.env.Type, &o.env.Source, &o.env.Payload
		dest[6], dest[7], dest[8], dest[9], dest[10], dest[11] = &meta, &occurred, &o.attempts, &o.nextAttempt, &o.done, &o.only
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		o.env.Metadata = decodeMetadata(meta)
		o.env.OccurredAt = time.UnixMicro(occurred).UTC()
	}
	return out, rows.Err()
}

// claimOnce relays the pending partitions it can lock, a batch at a time;
// it returns the rows handled and the earliest next attempt of rows it had
// to leave.
func (r *relay) claimOnce() (int, int64, error) {
	if !r.pg {
		return r.claimSQLite()
	}
	var parts []int32
	err := r.db.WithContext(r.workCtx).Raw(`WITH RECURSIVE p AS (
		(SELECT part FROM marty_outbox WHERE delivered_at IS NULL ORDER BY part LIMIT 1)
		UNION ALL
		SELECT (SELECT o.part FROM marty_outbox o WHERE o.delivered_at IS NULL AND o.part > p.part ORDER BY o.part LIMIT 1)
		FROM p WHERE p.part IS NOT NULL
	) SELECT part FROM p WHERE part IS NOT NULL`).Scan(&parts).Error
	if err != nil {
		return 0, 0, fmt.Errorf("find pending partitions: %w", err)
	}
	if len(parts) == 0 {
		return 0, 0, nil
	}
	// Start at a random pending partition, so workers (here and in other
	// replicas) spread over the partitions instead of queueing for the same
	// locks.
	off := rand.IntN(len(parts))
	parts = append(parts[off:], parts[:off]...)
	var nextDue int64
	total := 0
	for r.runCtx.Err() == nil {
		n, due, full, err := r.claimBatch(parts)
		if err != nil {
			return 0, 0, err
		}
		if due > 0 && (nextDue == 0 || due < nextDue) {
			nextDue = due
		}
		total += n
		if !full { // drained (or every partition is held by another worker)
			break
		}
	}
	return total, nextDue, nil
}

// partitionsPerBatch is how many partitions one relay transaction locks: an
// equal share among the replica's workers. A batch reads its partitions'
// rows in seq order, which are neighbours in the table, where a batch of
// one partition would touch a heap page per row.
func (r *relay) partitionsPerBatch() int {
	return max(1, (r.cfg.Partitions+r.cfg.RelayWorkers-1)/r.cfg.RelayWorkers)
}

// claimBatch relays one batch from the partitions of candidates it can
// lock; full says the batch was full, so more rows may be waiting. It runs
// on the pool's pgx connection directly: binary rows and no database/sql
// layer on the relay's hot path.
//
// The advisory locks make this transaction the only writer of those
// partitions' pending rows (only relay workers update or delete them, and
// only under the lock), so the rows need no FOR UPDATE. The commit does not
// wait for the WAL flush: a deletion lost in a database crash means the rows
// are delivered again, which at-least-once delivery allows (the inbox makes
// the effect exactly-once), and never that one is lost.
func (r *relay) claimBatch(candidates []int32) (n int, nextDue int64, full bool, err error) {
	ctx := r.workCtx
	err = r.withPgx(ctx, func(conn *pgx.Conn) error {
		return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// One round trip: configure the transaction, then lock a share
			// of the partitions.
			b := &pgx.Batch{}
			b.Queue(relayTxSettings)
			b.Queue("SELECT p FROM unnest($1::int[]) AS p WHERE pg_try_advisory_xact_lock($2, p) LIMIT $3",
				candidates, partitionLockClass, r.partitionsPerBatch())
			br := tx.SendBatch(ctx, b)
			if _, err := br.Exec(); err != nil {
				_ = br.Close() // the Exec error is the one to report
				return fmt.Errorf("configure relay transaction: %w", err)
			}
			lr, _ := br.Query()
			locked, err := pgx.CollectRows(lr, pgx.RowTo[int32])
			if cerr := br.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("lock partitions: %w", err)
			}
			if len(locked) == 0 {
				return nil
			}
			if r.transport != nil {
				n, nextDue, full, err = r.relayTransport(ctx, tx, locked)
				return err
			}
			args := make([]any, len(locked))
			for i, p := range locked {
				args[i] = p
			}
			rs, _ := tx.Query(ctx, claimQuery(len(locked), r.cfg.BatchSize), args...)
			rows, err := readRows(rs, r.cfg.BatchSize)
			rs.Close()
			if err != nil {
				return fmt.Errorf("claim partitions %v: %w", locked, err)
			}
			res := r.process(rows)
			n, nextDue = res.handled, res.nextDue
			full = len(rows) == r.cfg.BatchSize && n > 0
			return r.finish(func(q string, args ...any) error {
				_, err := tx.Exec(ctx, dollarParams(q), args...)
				return err
			}, res)
		})
	})
	return n, nextDue, full, err
}

// relayTxSettings configures a relay transaction (is_local: they end with
// it; see claimBatch).
const relayTxSettings = `SELECT set_config('synchronous_commit', 'off', true)`

// withPgx runs fn on a connection of the gorm pool as the pgx connection
// it is (fxrepo opens Postgres through pgx's database/sql driver).
func (r *relay) withPgx(ctx context.Context, fn func(*pgx.Conn) error) error {
	sqlDB, err := r.db.DB()
	if err != nil {
		return err
	}
	c, err := sqlDB.Conn(ctx)
	if err != nil {
		return err
	}
	// Close hands the connection back to the pool; it fails only on a
	// connection already handed back, which fn's error would explain.
	defer func() { _ = c.Close() }()
	return c.Raw(func(dc any) error {
		pc, ok := dc.(interface{ Conn() *pgx.Conn })
		if !ok {
			return fmt.Errorf("the outbox relay needs a pgx connection, the database pool holds %T", dc)
		}
		return fn(pc.Conn())
	})
}

// dollarParams numbers the ? placeholders of q for pgx ($1, $2, ...); the
// relay's statements have no ? elsewhere.
func dollarParams(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// claimQuery reads the first batch rows, in seq order, of the pending rows
// of parts partitions ($1 … $parts): a merge of one ordered scan of
// marty_outbox_pending per partition, each stopping as soon as the merge
// has its batch, so a batch reads about batch rows whatever the table holds.
func claimQuery(parts, batch int) string {
	var b strings.Builder
	limit := " ORDER BY seq LIMIT " + strconv.Itoa(batch)
	b.WriteString("SELECT " + rowColumns + " FROM (")
	for i := range parts {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString("(SELECT " + rowColumns + " FROM marty_outbox WHERE part = $" + strconv.Itoa(i+1) + " AND delivered_at IS NULL" + limit + ")")
	}
	b.WriteString(") o" + limit)
	return b.String()
}

// claimQueryAfter is claimQuery for the rows after seq $parts+1: the next
// batch of the same partitions, read in the transaction that has not
// deleted the previous one yet.
func claimQueryAfter(parts, batch int) string {
	var b strings.Builder
	limit := " ORDER BY seq LIMIT " + strconv.Itoa(batch)
	after := " AND seq > $" + strconv.Itoa(parts+1)
	b.WriteString("SELECT " + rowColumns + " FROM (")
	for i := range parts {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString("(SELECT " + rowColumns + " FROM marty_outbox WHERE part = $" + strconv.Itoa(i+1) + " AND delivered_at IS NULL" + after + limit + ")")
	}
	b.WriteString(") o" + limit)
	return b.String()
}

// pipelinedBatches is how many batches one relay transaction hands to a
// transport before it commits: a crash redelivers at most that many.
const pipelinedBatches = 4

// relayTransport relays the locked partitions to the transport as a
// pipeline in the transaction tx: while batch k is published (the
// transport waits for the broker's acknowledgements), the worker deletes
// batch k-1, which the broker acknowledged, and reads batch k+1 on the
// database connection. Batches are published one after another, each only
// once the previous one was accepted, so an aggregate's events keep their
// order; a row is deleted only after the broker accepted it, and only
// with the commit. A batch the transport refuses or cannot take ends the
// pipeline: its rows are rescheduled (or left as they are while the broker
// is unavailable) as in a one-batch transaction, and the rows read after
// it stay for a later pass. Rows not due block their aggregate's later
// rows in every following batch of the transaction.
func (r *relay) relayTransport(ctx context.Context, tx pgx.Tx, locked []int32) (n int, nextDue int64, full bool, err error) {
	args := make([]any, len(locked)+1)
	for i, p := range locked {
		args[i] = p
	}
	q := claimQueryAfter(len(locked), r.cfg.BatchSize)
	read := func(after int64) ([]outboxRow, error) {
		args[len(locked)] = after
		rs, _ := tx.Query(ctx, q, args...)
		rows, err := readRows(rs, r.cfg.BatchSize)
		rs.Close()
		if err != nil {
			return nil, fmt.Errorf("claim partitions %v: %w", locked, err)
		}
		return rows, nil
	}
	exec := func(q string, args ...any) error {
		_, err := tx.Exec(ctx, dollarParams(q), args...)
		return err
	}
	rows, err := read(0)
	if err != nil {
		return 0, 0, false, err
	}
	blocked := map[string]bool{}
	var prev *batchResult // published and acknowledged, not deleted yet
	for k := 0; ; k++ {
		full = len(rows) == r.cfg.BatchSize
		due, res := r.dueRows(rows, blocked)
		published := make(chan struct{})
		go func() {
			defer close(published)
			if len(due) > 0 {
				r.publishBatch(due, &res)
			}
		}()
		// While the broker works: delete what it acknowledged, read on.
		var ferr, rerr error
		if prev != nil {
			ferr = r.finish(exec, *prev) // every path below returns or sets prev again
		}
		var next []outboxRow
		more := full && ferr == nil && k+1 < pipelinedBatches && r.runCtx.Err() == nil
		if more {
			next, rerr = read(rows[len(rows)-1].seq)
		}
		<-published
		n += res.handled
		if res.nextDue > 0 && (nextDue == 0 || res.nextDue < nextDue) {
			nextDue = res.nextDue
		}
		if ferr != nil {
			return n, nextDue, false, ferr
		}
		if res.handled < len(due) || len(res.updates) > 0 { // refused or unavailable: end the pipeline
			return n, nextDue, false, r.finish(exec, res)
		}
		if rerr != nil || !more {
			if ferr := r.finish(exec, res); ferr != nil {
				return n, nextDue, false, ferr
			}
			return n, nextDue, full && rerr == nil && n > 0, rerr
		}
		prev = &res
		rows = next
	}
}

// dueRows returns the rows of a batch that are due, in order, leaving out
// those not due yet and, after one, every later row of its aggregate
// (blocked, which carries over to the following batches).
func (r *relay) dueRows(rows []outboxRow, blocked map[string]bool) ([]outboxRow, batchResult) {
	var res batchResult
	now := time.Now().UnixMicro()
	due := make([]outboxRow, 0, len(rows))
	for _, row := range rows {
		agg := row.env.AggregateID
		if agg != "" && blocked[agg] {
			continue
		}
		if row.nextAttempt > now {
			if agg != "" {
				blocked[agg] = true
			}
			if res.nextDue == 0 || row.nextAttempt < res.nextDue {
				res.nextDue = row.nextAttempt
			}
			continue
		}
		due = append(due, row)
	}
	res.delivered = make([]int64, 0, len(due))
	return due, res
}

// publishBatch hands due rows to the transport in the relay's batch span.
func (r *relay) publishBatch(due []outboxRow, res *batchResult) {
	r.m.batch.Observe(float64(len(due)))
	ctx, end := r.batchSpan(r.workCtx, due)
	defer end()
	r.processTransport(ctx, due, res)
}

// batchSpan starts the relay's span of a batch, linked to every
// publisher's span, when tracing is on.
func (r *relay) batchSpan(ctx context.Context, due []outboxRow) (context.Context, func()) {
	if !r.d.traced {
		return ctx, func() {}
	}
	links := make([]trace.Link, 0, len(due))
	for _, row := range due {
		sc := trace.SpanContextFromContext(r.d.prop.Extract(context.Background(), metaCarrier{&row.env.Metadata}))
		if sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	ctx, span := r.d.tracer.Start(ctx, "relay marty_outbox", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(links...), trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(due))))
	return ctx, func() { span.End() }
}

func (r *relay) claimSQLite() (int, int64, error) {
	db := r.db.WithContext(r.workCtx)
	rs, err := db.Raw("SELECT "+rowColumns+" FROM marty_outbox WHERE delivered_at IS NULL ORDER BY seq LIMIT ?", r.cfg.BatchSize).Rows()
	if err != nil {
		return 0, 0, fmt.Errorf("read marty_outbox: %w", err)
	}
	rows, err := readRows(rs, r.cfg.BatchSize)
	if cerr := rs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("read marty_outbox: %w", err)
	}
	res := r.process(rows)
	if err := db.Transaction(func(tx *gorm.DB) error {
		return r.finish(func(q string, args ...any) error { return tx.Exec(q, args...).Error }, res)
	}); err != nil {
		return 0, 0, err
	}
	return res.handled, res.nextDue, nil
}

type rowUpdate struct {
	seq       int64
	attempts  int
	next      int64
	lastError string
	done      string
}

type batchResult struct {
	handled   int
	delivered []int64 // delete or mark delivered
	updates   []rowUpdate
	nextDue   int64
}

// process handles claimed rows in seq order, keeping each aggregate's
// order: once one of its rows fails or is not due, its later rows wait.
func (r *relay) process(rows []outboxRow) batchResult {
	if len(rows) == 0 {
		return batchResult{}
	}
	blocked := map[string]bool{}
	due, res := r.dueRows(rows, blocked)
	if len(due) == 0 {
		return res
	}
	r.m.batch.Observe(float64(len(due)))
	ctx, end := r.batchSpan(r.workCtx, due)
	defer end()
	if r.transport != nil {
		r.processTransport(ctx, due, &res)
		return res
	}
	for _, row := range due {
		agg := row.env.AggregateID
		if agg != "" && blocked[agg] {
			continue
		}
		var doneBuf [4]string // handlers that succeeded, without an allocation in the common case
		done := doneBuf[:0]
		if row.done != "" {
			done = strings.Split(row.done, ",")
		}
		retry := false
		var delay time.Duration
		var lastErr string
		for _, e := range r.d.byType[row.env.Type] {
			if (row.only != "" && e.name != row.only) || slices.Contains(done, e.name) {
				continue
			}
			out := r.d.handleOne(ctx, e, row.env, row.attempts+1)
			if out.Err == nil || out.DeadLettered {
				done = append(done, e.name)
				continue
			}
			if r.workCtx.Err() != nil { // stopping: leave the row as it was
				return res
			}
			retry = true
			delay = max(delay, out.RetryAfter)
			lastErr = e.name + ": " + out.Err.Error()
		}
		res.handled++
		if !retry {
			res.delivered = append(res.delivered, row.seq)
			continue
		}
		r.m.failed.Inc()
		if agg != "" {
			blocked[agg] = true
		}
		// The backoff counts from the failure, not from the batch's start:
		// a slow handler does not use up its own retry delay.
		next := time.Now().UnixMicro() + delay.Microseconds()
		res.updates = append(res.updates, rowUpdate{seq: row.seq, attempts: row.attempts + 1, next: next,
			lastError: lastErr, done: strings.Join(done, ",")})
		if res.nextDue == 0 || next < res.nextDue {
			res.nextDue = next
		}
	}
	return res
}

// processTransport hands the due rows to the transport in one call, waiting
// at most HandlerTimeout (when set) for it: while the broker is unavailable the rows
// stay as they are (no attempt counted, the transaction ends) and the
// relay tries again after a pause that grows up to 5 s.
func (r *relay) processTransport(ctx context.Context, due []outboxRow, res *batchResult) {
	envs := make([]Envelope, len(due))
	for i, row := range due {
		envs[i] = row.env
	}
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if r.cfg.HandlerTimeout > 0 { // 0: no bound
		pctx, cancel = context.WithTimeout(ctx, r.cfg.HandlerTimeout)
	}
	err := r.transport.Publish(pctx, envs...)
	cancel()
	res.handled = len(due)
	if err == nil {
		if n := r.outage.Swap(0); n > 0 {
			r.log.Info("outbox relay: the transport is back", zap.Int("batches_delayed", int(n)))
		}
		for _, row := range due {
			res.delivered = append(res.delivered, row.seq)
		}
		return
	}
	if r.workCtx.Err() != nil {
		res.handled = 0
		return
	}
	if errors.Is(err, ErrTransportUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		n := r.outage.Add(1)
		if n == 1 {
			r.log.Warn("outbox relay: the transport is unavailable; events wait in the outbox", zap.Error(err))
		}
		res.handled = 0
		res.nextDue = time.Now().Add(min(r.d.Backoff(int(n)), 5*time.Second)).UnixMicro()
		return
	}
	failedAt := time.Now().UnixMicro() // retries count from the failure
	r.log.Warn("outbox relay: transport refused a batch", zap.Int("rows", len(due)), zap.Error(err))
	for _, row := range due {
		attempts := row.attempts + 1
		if attempts >= r.cfg.MaxAttempts {
			r.d.DeadLetter(ctx, "", row.env, fmt.Errorf("transport: %w", err), attempts)
			res.delivered = append(res.delivered, row.seq)
			continue
		}
		r.m.failed.Inc()
		next := failedAt + r.d.Backoff(attempts).Microseconds()
		res.updates = append(res.updates, rowUpdate{seq: row.seq, attempts: attempts, next: next,
			lastError: "transport: " + err.Error(), done: row.done})
		if res.nextDue == 0 || next < res.nextDue {
			res.nextDue = next
		}
	}
}

// finish deletes (or marks delivered) and reschedules rows with exec, a
// statement of the batch's transaction with ? placeholders.
func (r *relay) finish(exec func(q string, args ...any) error, res batchResult) error {
	if len(res.delivered) > 0 {
		var err error
		var ids any = res.delivered
		where := "seq IN ?"
		if r.pg { // one bigint[] parameter instead of one per row
			where = "seq = ANY(?)"
		}
		if r.cfg.Retention > 0 {
			err = exec("UPDATE marty_outbox SET delivered_at = ? WHERE "+where, time.Now().UnixMicro(), ids)
		} else {
			err = exec("DELETE FROM marty_outbox WHERE "+where, ids)
		}
		if err != nil {
			return fmt.Errorf("mark %d outbox rows delivered: %w", len(res.delivered), err)
		}
	}
	for _, u := range res.updates {
		if err := exec("UPDATE marty_outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, done_handlers = ? WHERE seq = ?",
			u.attempts, u.next, u.lastError, u.done, u.seq); err != nil {
			return fmt.Errorf("reschedule outbox row %d: %w", u.seq, err)
		}
	}
	r.m.delivered.Add(float64(len(res.delivered)))
	return nil
}

// maintain refreshes the pending and lag gauges and purges delivered
// outbox rows and old inbox rows, in batches.
func (r *relay) maintain() {
	every := min(5*time.Second, max(r.cfg.PollInterval, 100*time.Millisecond))
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		start := time.Now()
		r.stats()
		r.purge()
		t.Reset(maintainDelay(every, time.Since(start)))
		select {
		case <-r.runCtx.Done():
			return
		case <-t.C:
		}
	}
}

// maintainDelay is the pause before the next maintenance pass: every, or
// 20 times what the last pass took, so counting a backlog of millions of
// rows (an outage) takes at most about 5 % of the database's time.
func maintainDelay(every, took time.Duration) time.Duration {
	return max(every, 20*took)
}

func (r *relay) stats() {
	ctx, cancel := context.WithTimeout(r.runCtx, 5*time.Second)
	defer cancel()
	now := time.Now().UnixMicro()
	var st struct {
		Pending int64
		Oldest  *int64
	}
	err := r.db.WithContext(ctx).Raw(`SELECT COUNT(*) AS pending,
		MIN(CASE WHEN next_attempt_at <= ? THEN created_at END) AS oldest
		FROM marty_outbox WHERE delivered_at IS NULL`, now).Scan(&st).Error
	if err != nil {
		if r.runCtx.Err() == nil {
			r.log.Warn("outbox stats", zap.Error(err))
		}
		return
	}
	lag := 0.0
	if st.Oldest != nil {
		lag = max(0, float64(now-*st.Oldest)/1e6)
	}
	r.m.pending.Set(float64(st.Pending))
	r.m.lag.Set(lag)
	r.lag.Store(math.Float64bits(lag))
}

// purge deletes delivered rows past the retention and inbox rows past the
// retention (7 days when retention is 0), 1000 at a time.
func (r *relay) purge() {
	ctx, cancel := context.WithTimeout(r.runCtx, 30*time.Second)
	defer cancel()
	now := time.Now()
	inboxKeep := r.cfg.Retention
	if inboxKeep == 0 {
		inboxKeep = 7 * 24 * time.Hour
	}
	jobs := []struct{ what, sql string }{
		{"marty_inbox", "DELETE FROM marty_inbox WHERE (consumer, event_id) IN (SELECT consumer, event_id FROM marty_inbox WHERE processed_at < ? LIMIT 1000)"},
	}
	if r.cfg.Retention > 0 {
		jobs = append(jobs, struct{ what, sql string }{"marty_outbox",
			"DELETE FROM marty_outbox WHERE seq IN (SELECT seq FROM marty_outbox WHERE delivered_at IS NOT NULL AND delivered_at < ? LIMIT 1000)"})
	}
	for _, j := range jobs {
		cutoff := now.Add(-inboxKeep).UnixMicro()
		if j.what == "marty_outbox" {
			cutoff = now.Add(-r.cfg.Retention).UnixMicro()
		}
		for ctx.Err() == nil {
			res := r.db.WithContext(ctx).Exec(j.sql, cutoff)
			if res.Error != nil {
				if r.runCtx.Err() == nil {
					r.log.Warn("purge "+j.what, zap.Error(res.Error))
				}
				break
			}
			if res.RowsAffected < 1000 {
				break
			}
		}
	}
}

func (o *OutboxBus) health(context.Context) error {
	lag := math.Float64frombits(o.relay.lag.Load())
	if lag > o.cfg.LagAlert.Seconds() {
		return fmt.Errorf("fxevents: outbox lag %.1fs is over %s", lag, o.cfg.LagAlert)
	}
	return nil
}
