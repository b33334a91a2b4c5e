package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
)

const tracerName = "github.com/martyfx/martyfx/fxevents/saga"

// RuntimeOptions are what NewRuntime takes besides the Config.
type RuntimeOptions struct {
	// DB is the database of the sagas, the same as the outbox's (required).
	DB *gorm.DB
	// UnitOfWork runs timer and compensation steps; nil:
	// fxrepo.NewUnitOfWork(DB).
	UnitOfWork fxrepo.UnitOfWork
	// Bus is the outbox bus steps emit through; it may be set later with
	// UseBus (the bus's dispatcher needs the runtime's Handlers first).
	Bus fxevents.Bus
	// Codec decodes events; nil: fxevents.DefaultCodec().
	Codec fxevents.Codec
	// Sagas are the saga definitions (what AsSaga registers).
	Sagas []Saga
	// Upcasters bring events of an older version up to date before a step
	// decodes them (what AsUpcaster registers).
	Upcasters []fxevents.Upcaster
	// Logger receives the runtime's logs; nil: zap.NewNop().
	Logger *zap.Logger
	// TracerProvider makes the step spans; nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Registerer receives the marty_saga_* metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// Runtime runs sagas: their event steps (through the fxevents handlers it
// returns from Handlers), their timers and compensations (its own loop,
// between Start and Stop), and answers queries about them.
type Runtime struct {
	cfg   Config
	db    *gorm.DB
	uow   fxrepo.UnitOfWork
	bus   fxevents.Bus
	codec fxevents.Codec
	up    *fxevents.Upcasters
	log   *zap.Logger
	tr    trace.Tracer
	m     *metrics
	pg    bool
	defs  map[string]*core
	names []string
	// tokens map AsSaga registrations to saga names.
	tokens map[*byte]string

	mu      sync.Mutex
	started bool
	stop    func(abort bool) // ends the loops; abort: and the steps in flight
	release context.CancelFunc
	wg      sync.WaitGroup
	wake    chan struct{}
}

var traceContext = propagation.TraceContext{}

// NewRuntime checks the definitions and returns their runtime.
func NewRuntime(cfg Config, opts RuntimeOptions) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	if opts.DB == nil && len(opts.Sagas) > 0 {
		return nil, errors.New("saga: NewRuntime needs a database (RuntimeOptions.DB; with Fx add fxrepo.Module)")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = otel.GetTracerProvider()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Codec == nil {
		opts.Codec = fxevents.DefaultCodec()
	}
	if opts.UnitOfWork == nil && opts.DB != nil {
		opts.UnitOfWork = fxrepo.NewUnitOfWork(opts.DB)
	}
	up, err := fxevents.NewUpcasters(opts.Upcasters...)
	if err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("saga: register metrics: %w", err)
	}
	r := &Runtime{
		cfg: cfg, db: opts.DB, uow: opts.UnitOfWork, bus: opts.Bus, codec: opts.Codec, up: up,
		log: opts.Logger.Named("saga"), tr: opts.TracerProvider.Tracer(tracerName), m: m,
		defs: map[string]*core{}, tokens: map[*byte]string{}, wake: make(chan struct{}, 1),
	}
	if opts.DB != nil {
		r.pg = opts.DB.Name() == "postgres"
	}
	for _, s := range opts.Sagas {
		if s == nil {
			return nil, errors.New("saga: nil saga definition")
		}
		c := s.definition()
		if err := c.check(); err != nil {
			return nil, err
		}
		if r.defs[c.name] != nil {
			return nil, fmt.Errorf("saga: two sagas are named %q", c.name)
		}
		r.defs[c.name] = c
		r.names = append(r.names, c.name)
	}
	return r, nil
}

// UseBus sets the bus steps emit through (when RuntimeOptions.Bus was nil).
func (r *Runtime) UseBus(b fxevents.Bus) { r.bus = b }

// Handlers returns one fxevents handler per saga, named "saga.<name>", for
// the saga's event types; register them with the dispatcher. They are
// idempotent: the inbox mark of an event commits with the step (through
// fxevents.Idempotent on SQLite; on Postgres the step writes the same
// marty_inbox row in the statement that locks the saga).
func (r *Runtime) Handlers() []fxevents.Handler {
	out := make([]fxevents.Handler, 0, len(r.names))
	for _, n := range r.names {
		out = append(out, r.handler(r.defs[n]))
	}
	return out
}

func (r *Runtime) handler(c *core) fxevents.Handler {
	h := &sagaHandler{r: r, c: c, types: slices.Clone(c.order)}
	if r.pg {
		// On Postgres the step writes the inbox row itself, in the
		// statement that locks (or creates) the saga: one round trip
		// fewer per step than fxevents.Idempotent's separate insert, with
		// the same row (consumer "saga.<name>", event id) in the same
		// transaction.
		h.ownInbox = true
		return h
	}
	return fxevents.Idempotent(h)
}

// handlerFor returns the handler of the saga named name.
func (r *Runtime) handlerFor(name string) (fxevents.Handler, error) {
	c := r.defs[name]
	if c == nil {
		return nil, fmt.Errorf("saga: no saga %q", name)
	}
	return r.handler(c), nil
}

type sagaHandler struct {
	r     *Runtime
	c     *core
	types []string
	// ownInbox: the handler runs its own unit of work and marks the inbox
	// in runStep (Postgres); otherwise fxevents.Idempotent wraps it.
	ownInbox bool
}

func (h *sagaHandler) Name() string         { return "saga." + h.c.name }
func (h *sagaHandler) EventTypes() []string { return h.types }

// Handle runs in Idempotent's transaction, after the inbox mark, or (own
// inbox) opens the transaction whose first statement marks the inbox.
func (h *sagaHandler) Handle(ctx context.Context, env fxevents.Envelope) error {
	env, err := h.r.up.Upcast(env)
	if err != nil {
		return fxevents.Permanent(fmt.Errorf("saga %s: %w", h.c.name, err))
	}
	st := h.c.steps[env.Type]
	if st == nil {
		return nil
	}
	ev, err := st.decode(fxevents.CodecFrom(ctx), env)
	if err != nil {
		return fxevents.Permanent(fmt.Errorf("saga %s: decode %s (version %d): %w", h.c.name, env.Type, env.Version(), err))
	}
	key := st.key(ev)
	if key == "" {
		return fxevents.Permanent(fmt.Errorf("saga %s: event %s %s has an empty correlation key", h.c.name, env.Type, env.ID))
	}
	run := stepRun{
		name: st.name, starts: st.starts, eventID: env.ID, eventType: env.Type,
		fn: func(sc *stepCore) error { return st.run(sc, ev) },
	}
	if !h.ownInbox {
		_, err = h.r.runStep(ctx, h.c, key, run)
		return err
	}
	run.inbox = h.Name()
	return h.r.uow.Do(ctx, func(ctx context.Context) error {
		_, err := h.r.runStep(ctx, h.c, key, run)
		return err
	})
}

// stepRun is one step to run on a saga.
type stepRun struct {
	name      string
	starts    bool
	eventID   string
	eventType string
	timer     string // the timer that fired ("" for an event step)
	// inbox, when set, is the consumer whose marty_inbox row runStep
	// inserts for eventID (Postgres, see sagaHandler.ownInbox): an event
	// already marked is skipped.
	inbox string
	links []trace.Link
	fn    func(sc *stepCore) error
}

// sagaRow is a locked marty_saga row.
type sagaRow struct {
	status       Status
	state        []byte
	stateVersion int
	version      int64
	comps        []string
}

var errNoSaga = errors.New("no saga")

// lockSaga reads the saga's row under a row lock (FOR UPDATE on Postgres;
// SQLite's write transaction is already exclusive). skipLocked makes a
// locked row errNoSaga instead of a wait.
func (r *Runtime) lockSaga(db *gorm.DB, name, key string, skipLocked bool) (sagaRow, error) {
	q := `SELECT status, state, state_version, version, compensations FROM marty_saga WHERE saga_type = ? AND saga_key = ?`
	if r.pg {
		q += " FOR UPDATE"
		if skipLocked {
			q += " SKIP LOCKED"
		}
	}
	rows, err := db.Raw(q, name, key).Rows()
	if err != nil {
		return sagaRow{}, fmt.Errorf("lock saga: %w", err)
	}
	defer func() { _ = rows.Close() }()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return sagaRow{}, fmt.Errorf("lock saga: %w", err)
		}
		return sagaRow{}, errNoSaga
	}
	var row sagaRow
	var status, comps string
	if err := rows.Scan(&status, &row.state, &row.stateVersion, &row.version, &comps); err != nil {
		return sagaRow{}, fmt.Errorf("lock saga: %w", err)
	}
	row.status = Status(status)
	if comps != "" {
		if err := json.Unmarshal([]byte(comps), &row.comps); err != nil {
			return sagaRow{}, fmt.Errorf("saga compensations: %w", err)
		}
	}
	return row, nil
}

// runStep runs one step on the saga (name, key) in ctx's transaction (the
// caller's unit of work): lock the row (creating it for a starting step),
// load and upgrade the state, run the step, store the state, the timers and
// the history. It reports whether the step ran (false: ignored).
func (r *Runtime) runStep(ctx context.Context, c *core, key string, run stepRun) (bool, error) {
	db := fxrepo.DB(ctx, r.db)
	now := time.Now()
	row, created, dup, err := r.acquire(db, c, key, run, now)
	if dup {
		return false, nil // the inbox has the event: it took effect already
	}
	if errors.Is(err, errNoSaga) {
		r.m.ignored.WithLabelValues(c.name).Inc()
		r.log.Debug("event for no saga ignored", zap.String("saga", c.name), zap.String("key", key), zap.String("step", run.name))
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("saga %s: %w", c.name, err)
	}
	wantStatus := StatusRunning
	if run.timer == compensateTimer {
		wantStatus = StatusCompensating
	}
	if row.status != wantStatus {
		r.m.ignored.WithLabelValues(c.name).Inc()
		r.log.Debug("step on a saga that is not "+string(wantStatus)+" ignored", zap.String("saga", c.name), zap.String("key", key),
			zap.String("step", run.name), zap.String("status", string(row.status)))
		return false, nil
	}
	state, err := c.decodeState(row.state, row.stateVersion)
	if err != nil {
		return false, fxevents.Permanent(err)
	}
	sctx, span := r.tr.Start(ctx, "saga "+c.name+" "+run.name, trace.WithLinks(run.links...), trace.WithAttributes(
		attribute.String("saga.name", c.name), attribute.String("saga.key", key), attribute.String("saga.step", run.name)))
	sc := &stepCore{
		ctx: sctx, rt: r, def: c, key: key, state: state, status: row.status, comps: slices.Clone(row.comps),
		schedule: map[string]time.Time{}, cancel: map[string]bool{},
	}
	err = safeRun(run.fn, sc)
	if err == nil {
		err = r.store(sctx, db, c, key, run, row, sc, now)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.SetAttributes(attribute.String("saga.status", string(sc.status)))
	span.End()
	if err != nil {
		return false, err
	}
	elapsed := time.Since(now).Seconds()
	status := sc.status
	fxrepo.AfterCommit(ctx, func() {
		r.m.duration.WithLabelValues(c.name, run.name).Observe(elapsed)
		if created {
			r.m.started.WithLabelValues(c.name).Inc()
		}
		r.m.transition(c.name, row.status, status)
	})
	return true, nil
}

// acquire marks the inbox (run.inbox), creates the saga (a starting step)
// and locks its row, in as few round trips as it can: the row it returns
// is locked until the transaction ends. dup reports an event the inbox
// already had (nothing else was done); created, a saga no step has applied
// to yet (this one starts it).
func (r *Runtime) acquire(db *gorm.DB, c *core, key string, run stepRun, now time.Time) (row sagaRow, created, dup bool, err error) {
	us := now.UnixMicro()
	fresh := func() sagaRow {
		return sagaRow{status: StatusRunning, state: []byte("{}"), stateVersion: c.stateVersion}
	}
	if run.inbox != "" && run.starts {
		// Inbox mark and creation in one statement; a row that exists
		// already (or a concurrent creator's, which this insert waits
		// for) is then locked below.
		var marked, inserted int64
		err := db.Raw(`WITH i AS (INSERT INTO marty_inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)
				ON CONFLICT DO NOTHING RETURNING 1),
			s AS (INSERT INTO marty_saga (saga_type, saga_key, status, state, state_version, created_at, updated_at)
				SELECT ?::text, ?::text, ?::text, ?::bytea, ?::integer, ?::bigint, ?::bigint FROM i
				ON CONFLICT DO NOTHING RETURNING 1)
			SELECT (SELECT count(*) FROM i), (SELECT count(*) FROM s)`,
			run.inbox, run.eventID, us, c.name, key, string(StatusRunning), []byte("{}"), c.stateVersion, us, us).
			Row().Scan(&marked, &inserted)
		switch {
		case err != nil:
			return sagaRow{}, false, false, fmt.Errorf("saga %s: inbox and create: %w", c.name, err)
		case marked == 0:
			return sagaRow{}, false, true, nil
		case inserted == 1: // this transaction's own row: locked, no step applied
			return fresh(), true, false, nil
		}
		row, err := r.lockSaga(db, c.name, key, false)
		return row, err == nil && row.version == 0, false, err
	}
	if run.inbox != "" {
		// Inbox mark and row lock in one statement. No row: no saga (the
		// inbox mark commits, as fxevents.Idempotent's would).
		row, marked, err := r.markAndLock(db, c.name, key, run.inbox, run.eventID, us)
		if err == nil && !marked {
			return sagaRow{}, false, true, nil
		}
		return row, err == nil && row.version == 0, false, err
	}
	if run.starts {
		// Create it unless it exists: a concurrent creator's insert makes
		// this one wait, then do nothing, and the lock below sees its row.
		res := db.Exec(`INSERT INTO marty_saga (saga_type, saga_key, status, state, state_version, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			c.name, key, string(StatusRunning), []byte("{}"), c.stateVersion, us, us)
		if res.Error != nil {
			return sagaRow{}, false, false, fmt.Errorf("saga %s: create: %w", c.name, res.Error)
		}
		if res.RowsAffected == 1 { // inserted by this transaction, so locked by it
			return fresh(), true, false, nil
		}
	}
	row, err = r.lockSaga(db, c.name, key, false)
	return row, err == nil && row.version == 0, false, err // version 0: no step applied yet, this one starts it
}

// markAndLock inserts the inbox row of (consumer, eventID) and locks the
// saga's row in one statement (Postgres). marked is false for an event
// the inbox already had; errNoSaga when there is no saga.
func (r *Runtime) markAndLock(db *gorm.DB, name, key, consumer, eventID string, us int64) (row sagaRow, marked bool, err error) {
	// The saga side is a LATERAL subquery so that the statement always
	// returns the inbox count, with NULLs when there is no saga.
	rows, err := db.Raw(`WITH i AS (INSERT INTO marty_inbox (consumer, event_id, processed_at) VALUES (?, ?, ?)
			ON CONFLICT DO NOTHING RETURNING 1)
		SELECT (SELECT count(*) FROM i), s.status, s.state, s.state_version, s.version, s.compensations
		FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT status, state, state_version, version, compensations
			FROM marty_saga WHERE saga_type = ? AND saga_key = ? FOR UPDATE) s ON true`,
		consumer, eventID, us, name, key).Rows()
	if err != nil {
		return sagaRow{}, false, fmt.Errorf("inbox and lock saga: %w", err)
	}
	defer func() { _ = rows.Close() }()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return sagaRow{}, false, fmt.Errorf("inbox and lock saga: %w", err)
		}
		return sagaRow{}, false, errors.New("inbox and lock saga: no result row")
	}
	var n int64
	var status, comps *string
	var stateVersion *int
	var version *int64
	if err := rows.Scan(&n, &status, &row.state, &stateVersion, &version, &comps); err != nil {
		return sagaRow{}, false, fmt.Errorf("inbox and lock saga: %w", err)
	}
	switch {
	case n == 0:
		return sagaRow{}, false, nil
	case status == nil:
		return sagaRow{}, true, errNoSaga
	}
	row.status, row.stateVersion, row.version = Status(*status), *stateVersion, *version
	if *comps != "" {
		if err := json.Unmarshal([]byte(*comps), &row.comps); err != nil {
			return sagaRow{}, false, fmt.Errorf("saga compensations: %w", err)
		}
	}
	return row, true, nil
}

// safeRun calls fn, turning a panic into an error.
func safeRun(fn func(sc *stepCore) error, sc *stepCore) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("saga %s: step panicked: %v", sc.def.name, p)
		}
	}()
	return fn(sc)
}

// store writes what the step did: the state, the status, the compensation
// stack, the timers and a history row.
func (r *Runtime) store(ctx context.Context, db *gorm.DB, c *core, key string, run stepRun, row sagaRow, sc *stepCore, start time.Time) error {
	state, err := json.Marshal(sc.state)
	if err != nil {
		return fmt.Errorf("saga %s: encode state: %w", c.name, err)
	}
	now := time.Now().UnixMicro()
	lastErr := ""
	switch {
	case sc.status == StatusCompensating && row.status == StatusRunning:
		lastErr = sc.failed
		if len(sc.comps) == 0 {
			sc.status = StatusCompensated
		}
	case run.timer == compensateTimer && len(sc.comps) == 0:
		sc.status = StatusCompensated
	}
	comps := ""
	if len(sc.comps) > 0 {
		b, _ := json.Marshal(sc.comps)
		comps = string(b)
	}
	step := run.name
	if sc.label != "" {
		step = sc.label
	}
	leaving := sc.status != StatusRunning // a step that left the running state drops its timers
	if r.pg {
		// One round trip: the update, the timers' drop and the history row.
		if err := r.storePG(db, c, key, step, run, row, sc, state, comps, lastErr, now, leaving, time.Since(start)); err != nil {
			return err
		}
	} else {
		res := db.Exec(`UPDATE marty_saga SET status = ?, stuck = 0, state = ?, state_version = ?, version = version + 1,
			compensations = ?, last_error = CASE WHEN ? = '' THEN last_error ELSE ? END, updated_at = ?
			WHERE saga_type = ? AND saga_key = ? AND version = ?`,
			string(sc.status), state, c.stateVersion, comps, lastErr, lastErr, now, c.name, key, row.version)
		if res.Error != nil {
			return fmt.Errorf("saga %s: store: %w", c.name, res.Error)
		}
		if res.RowsAffected != 1 {
			return fmt.Errorf("saga %s: %s changed under the step (version %d)", c.name, key, row.version)
		}
		if leaving {
			if err := db.Exec(`DELETE FROM marty_saga_timer WHERE saga_type = ? AND saga_key = ?`, c.name, key).Error; err != nil {
				return fmt.Errorf("saga %s: delete timers: %w", c.name, err)
			}
		}
		if err := r.history(db, c.name, key, step, run.eventID, run.eventType, sc.status, lastErr, now, time.Since(start)); err != nil {
			return err
		}
	}
	// Timers: a step that left the running state drops its timers; the
	// compensation timer is (re)set while compensations remain.
	if run.timer != "" && !leaving {
		if err := db.Exec(`DELETE FROM marty_saga_timer WHERE saga_type = ? AND saga_key = ? AND name = ?`, c.name, key, run.timer).Error; err != nil {
			return fmt.Errorf("saga %s: delete timer: %w", c.name, err)
		}
	}
	soonest := time.Time{}
	if leaving { // the timers were dropped above
		sc.schedule, sc.cancel = map[string]time.Time{}, nil
		if sc.status == StatusCompensating {
			sc.schedule[compensateTimer] = time.Now()
		}
	}
	for name := range sc.cancel {
		if err := db.Exec(`DELETE FROM marty_saga_timer WHERE saga_type = ? AND saga_key = ? AND name = ?`, c.name, key, name).Error; err != nil {
			return fmt.Errorf("saga %s: cancel timer: %w", c.name, err)
		}
	}
	if len(sc.schedule) > 0 {
		meta := map[string]string{}
		traceContext.Inject(ctx, propagation.MapCarrier(meta))
		metaJSON, _ := json.Marshal(meta)
		for name, at := range sc.schedule {
			if err := db.Exec(`INSERT INTO marty_saga_timer (saga_type, saga_key, name, due_at, metadata) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (saga_type, saga_key, name) DO UPDATE SET due_at = excluded.due_at, attempts = 0, last_error = '',
				parked = 0, metadata = excluded.metadata`, c.name, key, name, at.UnixMicro(), string(metaJSON)).Error; err != nil {
				return fmt.Errorf("saga %s: schedule timer %s: %w", c.name, name, err)
			}
			if soonest.IsZero() || at.Before(soonest) {
				soonest = at
			}
		}
	}
	if !soonest.IsZero() && time.Until(soonest) < r.cfg.PollInterval {
		fxrepo.AfterCommit(ctx, r.signal)
	}
	return nil
}

// storePG writes the step's state, drops the saga's timers when leaving
// is set, and adds the history row, in one statement (Postgres): the
// history row is inserted only if the version-checked update matched, and
// the statement returns how many were.
func (r *Runtime) storePG(db *gorm.DB, c *core, key, step string, run stepRun, row sagaRow, sc *stepCore,
	state []byte, comps, lastErr string, now int64, leaving bool, d time.Duration) error {
	q := `WITH u AS (UPDATE marty_saga SET status = ?, stuck = 0, state = ?, state_version = ?, version = version + 1,
		compensations = ?, last_error = CASE WHEN ? = '' THEN last_error ELSE ? END, updated_at = ?
		WHERE saga_type = ? AND saga_key = ? AND version = ? RETURNING 1)`
	args := []any{string(sc.status), state, c.stateVersion, comps, lastErr, lastErr, now, c.name, key, row.version}
	if leaving {
		q += `, t AS (DELETE FROM marty_saga_timer WHERE saga_type = ? AND saga_key = ?)`
		args = append(args, c.name, key)
	}
	q += ` INSERT INTO marty_saga_step (saga_type, saga_key, step, event_id, event_type, status, error, at, duration_us)
		SELECT ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::bigint, ?::bigint FROM u`
	args = append(args, c.name, key, step, run.eventID, run.eventType, string(sc.status), lastErr, now, d.Microseconds())
	res := db.Exec(q, args...)
	if res.Error != nil {
		return fmt.Errorf("saga %s: store: %w", c.name, res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("saga %s: %s changed under the step (version %d)", c.name, key, row.version)
	}
	return nil
}

func (r *Runtime) history(db *gorm.DB, name, key, step, eventID, eventType string, status Status, errText string, at int64, d time.Duration) error {
	if err := db.Exec(`INSERT INTO marty_saga_step (saga_type, saga_key, step, event_id, event_type, status, error, at, duration_us)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, name, key, step, eventID, eventType, string(status), errText, at, d.Microseconds()).Error; err != nil {
		return fmt.Errorf("saga %s: history: %w", name, err)
	}
	return nil
}

// signal wakes the timer loop.
func (r *Runtime) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}
