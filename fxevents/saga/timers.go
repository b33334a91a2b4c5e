package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
)

// Start starts the timer loop: MARTY_SAGA_WORKERS workers that fire due
// timers and run compensations. It fails when no bus was set or the bus is
// not the transactional outbox. Calling it again does nothing.
func (r *Runtime) Start(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || len(r.defs) == 0 {
		return nil
	}
	if r.bus == nil {
		return errors.New("saga: the runtime has no bus (RuntimeOptions.Bus or UseBus)")
	}
	if !outboxBus(r.bus) {
		return fmt.Errorf("saga: steps emit through the transactional outbox, the bus is a %T: set MARTY_EVENTS_BUS=outbox", r.bus)
	}
	r.started = true
	runCtx, runCancel := context.WithCancel(context.Background())
	workCtx, workCancel := context.WithCancel(context.Background())
	r.stop = func(abort bool) {
		runCancel()
		if abort {
			workCancel()
		}
	}
	r.release = workCancel
	workers := r.cfg.Workers
	if !r.pg {
		workers = 1 // one writer at a time anyway
	}
	for range workers {
		r.wg.Go(func() { r.timerLoop(runCtx, workCtx) })
	}
	r.wg.Go(func() { r.gaugeLoop(runCtx) })
	return nil
}

// Stop ends the loop; a step in flight finishes until ctx ends, then is
// rolled back (its timer fires again later).
func (r *Runtime) Stop(ctx context.Context) error {
	r.mu.Lock()
	started := r.started
	r.started = false
	r.mu.Unlock()
	if !started {
		return nil
	}
	r.stop(false)
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		r.release()
		return nil
	case <-ctx.Done():
		r.stop(true)
		<-done
		return fmt.Errorf("saga: stop: %w", ctx.Err())
	}
}

func (r *Runtime) timerLoop(ctx, work context.Context) {
	errWait := 100 * time.Millisecond
	for ctx.Err() == nil {
		ran, next, err := r.fireOne(work)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			r.log.Warn("saga timer loop failed; retrying", zap.Duration("backoff", errWait), zap.Error(err))
			r.sleep(ctx, errWait)
			errWait = min(errWait*2, 5*time.Second)
		case ran:
			errWait = 100 * time.Millisecond
		default:
			wait := r.cfg.PollInterval
			if !next.IsZero() {
				wait = min(wait, max(time.Until(next), time.Millisecond))
			}
			r.sleep(ctx, wait)
		}
	}
}

func (r *Runtime) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.wake:
	case <-t.C:
	}
}

// timerRow is a due marty_saga_timer row.
type timerRow struct {
	id       int64
	saga     string
	key      string
	name     string
	attempts int
	metadata string
}

// fireOne runs one due timer, if any: it reports whether one ran (or
// failed), else when the next is due (zero: unknown). The saga's row lock
// is the timer's lock: on Postgres the candidate whose saga another worker
// holds is skipped (SKIP LOCKED), and the timer is read again under the
// lock, so it fires once across replicas; it is deleted in the transaction
// of its step, so a crash before the commit fires it again.
func (r *Runtime) fireOne(ctx context.Context) (bool, time.Time, error) {
	stepCtx, cancel := context.WithTimeout(ctx, r.cfg.StepTimeout)
	defer cancel()
	var fired *timerRow
	var stepErr error
	var recorded, parked bool
	err := r.uow.Do(stepCtx, func(ctx context.Context) error {
		fired, stepErr, recorded, parked = nil, nil, false, false
		db := fxrepo.DB(ctx, r.db)
		now := time.Now().UnixMicro()
		// This app's sagas only (a database may hold another service's),
		// and only timers whose saga exists.
		q := `SELECT t.id, t.saga_type, t.saga_key FROM marty_saga_timer t WHERE t.parked = 0 AND t.due_at <= ?
			AND t.saga_type IN ? AND EXISTS (SELECT 1 FROM marty_saga s WHERE s.saga_type = t.saga_type AND s.saga_key = t.saga_key)
			ORDER BY t.due_at LIMIT 16`
		type cand struct {
			ID       int64
			SagaType string
			SagaKey  string
		}
		var cands []cand
		if err := db.Raw(q, now, r.names).Scan(&cands).Error; err != nil {
			return fmt.Errorf("find due timers: %w", err)
		}
		// Start at a random candidate so workers spread over them.
		if n := len(cands); n > 1 {
			off := rand.IntN(n)
			cands = append(cands[off:], cands[:off]...)
		}
		for _, cd := range cands {
			c := r.defs[cd.SagaType]
			if c == nil {
				continue // another service's saga in a shared database
			}
			locked, err := r.lockSaga(db, cd.SagaType, cd.SagaKey, true)
			if errors.Is(err, errNoSaga) {
				continue // held by another worker (or gone)
			} else if err != nil {
				return err
			}
			var t timerRow
			rows, err := db.Raw(`SELECT id, saga_type, saga_key, name, attempts, metadata FROM marty_saga_timer
				WHERE id = ? AND parked = 0 AND due_at <= ?`, cd.ID, now).Rows()
			if err != nil {
				return fmt.Errorf("read timer: %w", err)
			}
			found := rows.Next()
			if found {
				err = rows.Scan(&t.id, &t.saga, &t.key, &t.name, &t.attempts, &t.metadata)
			}
			_ = rows.Close()
			if err != nil {
				return fmt.Errorf("read timer: %w", err)
			}
			if !found {
				continue // fired or rescheduled by the step that held the lock
			}
			fired = &t
			// A failed attempt is rolled back to here and recorded in the
			// same transaction, still holding the saga's lock: no other
			// worker runs it again before the backoff.
			if err := db.SavePoint("marty_saga_step").Error; err != nil {
				return err
			}
			stepErr = r.runTimer(ctx, c, t)
			if stepErr == nil || ctx.Err() != nil {
				return stepErr // on an expired context the transaction ends: recorded apart
			}
			if err := db.RollbackTo("marty_saga_step").Error; err != nil {
				return stepErr
			}
			park, err := r.recordFailure(db, t, locked.status, stepErr)
			if err != nil {
				return stepErr
			}
			recorded, parked = true, park
			return nil
		}
		return nil
	})
	if fired == nil {
		if err != nil {
			return false, time.Time{}, err
		}
		return false, r.nextDue(ctx), nil
	}
	if err == nil && recorded {
		r.reportFailure(*fired, parked, stepErr)
		return true, time.Time{}, nil
	}
	if err != nil {
		if stepErr == nil { // the commit failed: the timer fires again
			return true, time.Time{}, err
		}
		if ferr := r.timerFailed(ctx, *fired, stepErr); ferr != nil {
			return true, time.Time{}, ferr
		}
	}
	return true, time.Time{}, nil
}

// runTimer runs a due timer's step in ctx's transaction.
func (r *Runtime) runTimer(ctx context.Context, c *core, t timerRow) error {
	// The step's span links to the step that scheduled the timer.
	meta := map[string]string{}
	if t.metadata != "" {
		_ = json.Unmarshal([]byte(t.metadata), &meta)
	}
	run := stepRun{name: "timer " + t.name, timer: t.name}
	if sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(meta))); sc.IsValid() {
		run.links = []trace.Link{{SpanContext: sc}}
	}
	if t.name == compensateTimer {
		run.fn = func(sc *stepCore) error {
			if len(sc.comps) == 0 {
				return nil
			}
			name := sc.comps[len(sc.comps)-1]
			sc.comps = sc.comps[:len(sc.comps)-1]
			sc.label = "compensate " + name
			fn := c.comps[name]
			if fn == nil {
				return fmt.Errorf("saga %s: compensation %q is not registered in this build", c.name, name)
			}
			return fn(sc)
		}
		run.name = "compensate"
	} else {
		fn := c.timers[t.name]
		if fn == nil {
			return fmt.Errorf("saga %s: timer %q is not registered in this build", c.name, t.name)
		}
		run.fn = func(sc *stepCore) error { return fn(sc) }
	}
	ran, err := r.runStep(ctx, c, t.key, run)
	if err == nil && !ran {
		// The saga is no longer in the state the timer was for: drop it.
		err = fxrepo.DB(ctx, r.db).Exec(`DELETE FROM marty_saga_timer WHERE id = ?`, t.id).Error
	}
	return err
}

// timerFailed records a failed timer step in a transaction of its own,
// for a step whose transaction ended with it (its context expired, or the
// savepoint could not be rolled back to).
func (r *Runtime) timerFailed(ctx context.Context, t timerRow, stepErr error) error {
	var park bool
	err := r.uow.Do(ctx, func(ctx context.Context) error {
		db := fxrepo.DB(ctx, r.db)
		row, err := r.lockSaga(db, t.saga, t.key, false)
		if err != nil {
			return err
		}
		park, err = r.recordFailure(db, t, row.status, stepErr)
		return err
	})
	if err != nil {
		return fmt.Errorf("saga %s: record failed timer: %w", t.saga, err)
	}
	r.reportFailure(t, park, stepErr)
	return nil
}

// recordFailure stores a failed attempt of a timer step with the saga
// locked: the attempt count, the next attempt after the backoff and, once
// MARTY_SAGA_MAX_ATTEMPTS are spent, the parked timer and the stuck saga.
func (r *Runtime) recordFailure(db *gorm.DB, t timerRow, status Status, stepErr error) (park bool, err error) {
	attempts := t.attempts + 1
	park = attempts >= r.cfg.MaxAttempts
	errText := stepErr.Error()
	now := time.Now()
	due := now.Add(backoff(r.cfg.BackoffInitial, r.cfg.BackoffMax, attempts)).UnixMicro()
	res := db.Exec(`UPDATE marty_saga_timer SET attempts = ?, last_error = ?, due_at = ?, parked = ? WHERE id = ?`,
		attempts, errText, due, boolInt(park), t.id)
	if res.Error != nil {
		return false, res.Error
	}
	if res.RowsAffected == 0 {
		return false, nil
	}
	if park {
		if err := db.Exec(`UPDATE marty_saga SET stuck = 1, last_error = ?, updated_at = ? WHERE saga_type = ? AND saga_key = ?`,
			errText, now.UnixMicro(), t.saga, t.key).Error; err != nil {
			return false, err
		}
	}
	return park, r.history(db, t.saga, t.key, stepName(t.name), "", "", status, errText, now.UnixMicro(), 0)
}

// reportFailure counts and logs a recorded failure.
func (r *Runtime) reportFailure(t timerRow, park bool, stepErr error) {
	attempts := t.attempts + 1
	r.m.stepFailures.WithLabelValues(t.saga, stepName(t.name)).Inc()
	if park {
		r.m.stuck.WithLabelValues(t.saga).Inc()
		r.log.Error("saga step ran out of attempts; the saga is stuck until retried", zap.String("saga", t.saga),
			zap.String("key", t.key), zap.String("step", stepName(t.name)), zap.Int("attempts", attempts), zap.Error(stepErr))
		return
	}
	r.log.Warn("saga step failed; retrying", zap.String("saga", t.saga), zap.String("key", t.key),
		zap.String("step", stepName(t.name)), zap.Int("attempt", attempts), zap.Error(stepErr))
}

func stepName(timer string) string {
	if timer == compensateTimer {
		return "compensate"
	}
	return "timer " + timer
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nextDue is when the earliest unparked timer is due (zero: none or
// unknown).
func (r *Runtime) nextDue(ctx context.Context) time.Time {
	var next *int64
	if err := r.db.WithContext(ctx).Raw(`SELECT MIN(due_at) FROM marty_saga_timer WHERE parked = 0 AND saga_type IN ?`, r.names).Scan(&next).Error; err != nil || next == nil {
		return time.Time{}
	}
	return time.UnixMicro(*next)
}

// backoff is initial·2^(attempt-1), capped at maxDelay, with ±20% jitter.
func backoff(initial, maxDelay time.Duration, attempt int) time.Duration {
	delay := initial
	for i := 1; i < attempt && delay < maxDelay; i++ {
		delay *= 2
	}
	delay = min(delay, maxDelay)
	return time.Duration(float64(delay) * (0.8 + 0.4*rand.Float64()))
}

// gaugeLoop refreshes marty_saga_open every PollInterval (at least every
// second) and purges ended sagas past the retention.
func (r *Runtime) gaugeLoop(ctx context.Context) {
	t := time.NewTicker(max(r.cfg.PollInterval, time.Second))
	defer t.Stop()
	for {
		r.refreshGauges(ctx)
		if r.cfg.Retention > 0 {
			r.purge(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runtime) refreshGauges(ctx context.Context) {
	type count struct {
		SagaType string
		Status   string
		Stuck    int
		N        int64
	}
	var counts []count
	if err := r.db.WithContext(ctx).Raw(`SELECT saga_type, status, stuck, COUNT(*) AS n FROM marty_saga
		WHERE status IN ('running', 'compensating') GROUP BY saga_type, status, stuck`).Scan(&counts).Error; err != nil {
		return
	}
	r.m.open.Reset()
	var stuck int64
	for _, n := range r.names {
		r.m.open.WithLabelValues(n, string(StatusRunning)).Set(0)
		r.m.open.WithLabelValues(n, string(StatusCompensating)).Set(0)
		r.m.open.WithLabelValues(n, "stuck").Set(0)
	}
	for _, c := range counts {
		if r.defs[c.SagaType] == nil {
			continue
		}
		st := c.Status
		if c.Stuck == 1 {
			st = "stuck"
			stuck += c.N
		}
		r.m.open.WithLabelValues(c.SagaType, st).Add(float64(c.N))
	}
	r.m.stuckNow.Set(float64(stuck))
}

// purge deletes this app's sagas that ended more than MARTY_SAGA_RETENTION
// ago, with their history, a batch at a time.
func (r *Runtime) purge(ctx context.Context) {
	before := time.Now().Add(-r.cfg.Retention).UnixMicro()
	for _, name := range r.names {
		err := r.uow.Do(ctx, func(ctx context.Context) error {
			db := fxrepo.DB(ctx, r.db)
			var keys []string
			if err := db.Raw(`SELECT saga_key FROM marty_saga WHERE saga_type = ? AND status IN ('completed', 'compensated', 'aborted')
				AND updated_at < ? LIMIT 1000`, name, before).Scan(&keys).Error; err != nil {
				return err
			}
			if len(keys) == 0 {
				return nil
			}
			if err := db.Exec(`DELETE FROM marty_saga_step WHERE saga_type = ? AND saga_key IN ?`, name, keys).Error; err != nil {
				return err
			}
			res := db.Exec(`DELETE FROM marty_saga WHERE saga_type = ? AND saga_key IN ? AND status IN ('completed', 'compensated', 'aborted')`, name, keys)
			if res.Error == nil {
				r.m.purged.Add(float64(res.RowsAffected))
			}
			return res.Error
		})
		if err != nil && ctx.Err() == nil {
			r.log.Warn("saga purge failed", zap.String("saga", name), zap.Error(err))
		}
	}
}

// outboxBus reports whether b is the transactional outbox, or a bus that
// wraps it (Unwrap() fxevents.Bus).
func outboxBus(b fxevents.Bus) bool {
	for b != nil {
		if _, ok := b.(*fxevents.OutboxBus); ok {
			return true
		}
		// A bus that wraps another (fxtest's recorder) says which.
		w, ok := b.(interface{ Unwrap() fxevents.Bus })
		if !ok {
			return false
		}
		b = w.Unwrap()
	}
	return false
}
