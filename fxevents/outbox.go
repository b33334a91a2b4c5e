package fxevents

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxrepo"
	"github.com/prometheus/client_golang/prometheus"
)

//go:embed migrations
var migrationFiles embed.FS

// Migrations returns the goose migrations of the marty_outbox,
// marty_outbox_dead and marty_inbox tables, with a "postgres" and a
// "sqlite" directory. The Module registers them with fxrepo.AsMigrations.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err)
	}
	return sub
}

// notifyChannel is the Postgres channel Publish notifies and the relay
// listens on.
const notifyChannel = "marty_outbox"

// AggregateTyped is implemented by events that name their aggregate's type
// ("order"); the outbox stores it (column aggregate_type) for tools that
// read the table, Debezium style.
type AggregateTyped interface {
	AggregateType() string
}

// OutboxBus is the transactional outbox: Publish inserts the events into
// marty_outbox through fxrepo.DB(ctx, db), so inside fxrepo.UnitOfWork.Do
// they commit or roll back with the change that caused them; the relay
// delivers them (see relay.go).
type OutboxBus struct {
	d      *Dispatcher
	db     *gorm.DB
	cfg    Config
	pg     bool
	relay  *relay
	signal func() // wakes the local relay (SQLite: after commit)

	mu      sync.Mutex
	started bool
}

// OutboxBusOptions are what NewOutboxBus takes; the bus's settings are the
// dispatcher's Config (relay, poll interval, batch size, partitions ...).
type OutboxBusOptions struct {
	// Dispatcher runs the handlers (required); it must have been built
	// with Config.Bus "outbox" and a DB, which is the outbox's database.
	Dispatcher *Dispatcher
	// Transport, when set, receives the relayed envelopes instead of the
	// dispatcher's handlers; nil: the relay runs the handlers in process.
	Transport Transport
	// Logger receives the relay's logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Registerer receives the marty_outbox_* metrics; nil: they are not
	// registered.
	Registerer prometheus.Registerer
	// ListenDSN is the Postgres DSN the relay LISTENs on (its own pgx
	// connection outside the pool), to wake on NOTIFY right after a
	// publishing transaction commits; empty: the relay polls every
	// Config.PollInterval. Ignored on SQLite, where a commit in this
	// process wakes the relay.
	ListenDSN string
}

// NewOutboxBus returns the transactional outbox over opts.Dispatcher's
// database. Start runs the relay (unless Config.Relay is false), Stop ends
// it; Publish works without them (a publish-only process).
func NewOutboxBus(opts OutboxBusOptions) (*OutboxBus, error) {
	d := opts.Dispatcher
	if d == nil || d.db == nil || d.cfg.Bus != BusOutbox {
		return nil, errors.New("fxevents: NewOutboxBus needs a Dispatcher built with Config.Bus \"outbox\" and DispatcherOptions.DB")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry() // registered nowhere
	}
	m, err := newRelayMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("fxevents: register metrics: %w", err)
	}
	pg := d.db.Name() == "postgres"
	r := &relay{
		d: d, db: d.db, cfg: d.cfg, pg: pg, transport: opts.Transport,
		log: opts.Logger.Named("events.relay"), m: m,
	}
	if pg {
		r.dsn = opts.ListenDSN
	}
	o := &OutboxBus{d: d, db: d.db, cfg: d.cfg, pg: pg, relay: r}
	if !pg {
		o.signal = r.wakeAll
	}
	if dead, ok := d.dead.(*outboxDeadLetters); ok {
		dead.m = m
		dead.notify = r.wakeAll
	}
	return o, nil
}

// Start starts the relay when Config.Relay is true. It never blocks and
// returns nil; calling it again does nothing.
func (o *OutboxBus) Start(context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started || !o.cfg.Relay {
		return nil
	}
	o.started = true
	o.relay.start()
	return nil
}

// Stop ends the relay: no new batch starts, and the batches in flight
// finish until ctx ends, then are aborted (their rows are delivered again
// later). Publish still stores events afterwards.
func (o *OutboxBus) Stop(ctx context.Context) error {
	o.mu.Lock()
	started := o.started
	o.started = false
	o.mu.Unlock()
	if !started {
		return nil
	}
	return o.relay.stop(ctx)
}

func partitionOf(key string, partitions int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

func encodeMetadata(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func decodeMetadata(s string) map[string]string {
	if s == "" {
		return nil
	}
	var m map[string]string
	_ = json.Unmarshal([]byte(s), &m)
	return m
}

const outboxColumns = "id, aggregate_type, aggregate_id, part, type, source, payload, metadata, occurred_at, created_at, next_attempt_at"

// Publish implements Bus: it stores the events in marty_outbox in ctx's
// transaction (or on its own when ctx has none, unless RequireTx) and, on
// Postgres, issues NOTIFY so a listening relay claims them right after
// commit. It returns once the rows are written; they are delivered after
// the transaction commits.
func (o *OutboxBus) Publish(ctx context.Context, events ...Event) error {
	if len(events) == 0 {
		return nil
	}
	inTx := fxrepo.InTx(ctx)
	if o.cfg.RequireTx && !inTx {
		return ErrNoTransaction
	}
	now := time.Now().UnixMicro()
	spans := make([]trace.Span, 0, len(events))
	types := make([]string, 0, len(events))
	var sb strings.Builder
	sb.WriteString("INSERT INTO marty_outbox (" + outboxColumns + ") VALUES ")
	args := make([]any, 0, len(events)*11)
	for i, ev := range events {
		span, env, err := o.d.startPublish(ctx, ev)
		if err != nil {
			for _, s := range spans {
				endSpan(s, err)
			}
			return err
		}
		spans = append(spans, span)
		types = append(types, env.Type)
		aggType := ""
		if at, ok := ev.(AggregateTyped); ok {
			aggType = at.AggregateType()
		}
		key := env.AggregateID
		if key == "" {
			key = env.ID
		}
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, env.ID, aggType, env.AggregateID, partitionOf(key, o.cfg.Partitions), env.Type, env.Source,
			env.Payload, encodeMetadata(env.Metadata), env.OccurredAt.UnixMicro(), now, now)
	}
	query := sb.String()
	if o.pg { // insert and NOTIFY (sent at commit) in one round trip
		query = "WITH ins AS (" + query + ") SELECT pg_notify('" + notifyChannel + "', '')"
	}
	err := fxrepo.DB(ctx, o.db).Exec(query, args...).Error
	if err != nil {
		err = fmt.Errorf("fxevents: insert into marty_outbox: %w", err)
	}
	for i, s := range spans {
		if err == nil {
			o.d.m.publishedFor(types[i]).Inc()
		}
		endSpan(s, err)
	}
	if err != nil {
		return err
	}
	if o.signal != nil {
		fxrepo.AfterCommit(ctx, o.signal)
	}
	return nil
}

// outboxDeadLetters is the DeadLetterStore of the outbox: marty_outbox_dead.
// Re-drive moves a dead letter back into marty_outbox (for its handler
// only), where the relay delivers it again.
type outboxDeadLetters struct {
	m      *relayMetrics
	db     *gorm.DB
	cfg    Config
	pg     bool
	notify func()
}

func newOutboxDeadLetters(db *gorm.DB, cfg Config) *outboxDeadLetters {
	return &outboxDeadLetters{db: db, cfg: cfg, pg: db.Name() == "postgres"}
}

func (s *outboxDeadLetters) Add(ctx context.Context, dl DeadLetter) error {
	e := dl.Envelope
	aggType := ""
	if s.m != nil {
		s.m.dead.Inc()
	}
	return s.db.WithContext(ctx).Exec(`INSERT INTO marty_outbox_dead
		(event_id, handler, aggregate_type, aggregate_id, type, source, payload, metadata, occurred_at, attempts, last_error, dead_at)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.ID, dl.Handler, aggType, e.AggregateID, e.Type, e.Source, e.Payload, encodeMetadata(e.Metadata),
		e.OccurredAt.UnixMicro(), dl.Attempts, dl.Error, dl.At.UnixMicro()).Error
}

func (s *outboxDeadLetters) List(ctx context.Context, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.WithContext(ctx).Raw(`SELECT id, event_id, handler, aggregate_id, type, source, payload, metadata,
		occurred_at, attempts, last_error, dead_at FROM marty_outbox_dead ORDER BY id DESC LIMIT ?`, limit).Rows()
	if err != nil {
		return nil, fmt.Errorf("fxevents: list dead letters: %w", err)
	}
	// rows.Err below reports a failed read; Close only hands the
	// connection back.
	defer func() { _ = rows.Close() }()
	var out []DeadLetter
	for rows.Next() {
		var dl DeadLetter
		var id, occurred, at int64
		var meta string
		if err := rows.Scan(&id, &dl.Envelope.ID, &dl.Handler, &dl.Envelope.AggregateID, &dl.Envelope.Type, &dl.Envelope.Source,
			&dl.Envelope.Payload, &meta, &occurred, &dl.Attempts, &dl.Error, &at); err != nil {
			return nil, fmt.Errorf("fxevents: list dead letters: %w", err)
		}
		dl.ID = strconv.FormatInt(id, 10)
		dl.Envelope.Metadata = decodeMetadata(meta)
		dl.Envelope.OccurredAt = time.UnixMicro(occurred).UTC()
		dl.At = time.UnixMicro(at).UTC()
		out = append(out, dl)
	}
	return out, rows.Err()
}

// redrive moves dead rows (where is a condition on marty_outbox_dead) back
// into the outbox in one transaction and returns how many.
func (s *outboxDeadLetters) redrive(ctx context.Context, where string, args ...any) (int, error) {
	var n int64
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		now := time.Now().UnixMicro()
		// part is recomputed in Go below; insert with the aggregate's key.
		rows, err := tx.Raw(`SELECT id, event_id, handler, aggregate_type, aggregate_id, type, source, payload, metadata, occurred_at
			FROM marty_outbox_dead WHERE `+where+` ORDER BY id`, args...).Rows()
		if err != nil {
			return err
		}
		type dead struct {
			id                                               int64
			eventID, handler, aggType, aggID, typ, src, meta string
			payload                                          []byte
			occurred                                         int64
		}
		var all []dead
		for rows.Next() {
			var d dead
			if err := rows.Scan(&d.id, &d.eventID, &d.handler, &d.aggType, &d.aggID, &d.typ, &d.src, &d.payload, &d.meta, &d.occurred); err != nil {
				_ = rows.Close() // the scan error is the one to report
				return err
			}
			all = append(all, d)
		}
		err = rows.Err() // a read that failed midway must not redrive a part of the rows
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		for _, d := range all {
			key := d.aggID
			if key == "" {
				key = d.eventID
			}
			if err := tx.Exec(`INSERT INTO marty_outbox (`+outboxColumns+`, only_handler) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
				d.eventID, d.aggType, d.aggID, partitionOf(key, s.cfg.Partitions), d.typ, d.src, d.payload, d.meta, d.occurred, now, now,
				d.handler).Error; err != nil {
				return err
			}
			if err := tx.Exec(`DELETE FROM marty_outbox_dead WHERE id = ?`, d.id).Error; err != nil {
				return err
			}
			n++
		}
		if n > 0 && s.pg {
			return tx.Exec("SELECT pg_notify('" + notifyChannel + "', '')").Error
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("fxevents: re-drive dead letters: %w", err)
	}
	if n > 0 && s.notify != nil {
		s.notify()
	}
	return int(n), nil
}

func (s *outboxDeadLetters) Retry(ctx context.Context, id string) error {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return ErrDeadLetterNotFound
	}
	moved, err := s.redrive(ctx, "id = ?", n)
	if err != nil {
		return err
	}
	if moved == 0 {
		return ErrDeadLetterNotFound
	}
	return nil
}

func (s *outboxDeadLetters) RetryAll(ctx context.Context) (int, error) {
	return s.redrive(ctx, "1 = 1")
}
