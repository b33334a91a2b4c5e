package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/martyfx/martyfx/fxrepo"
)

// ErrNotFound is returned for a saga that does not exist.
var ErrNotFound = errors.New("saga: not found")

// Instance is a stored saga.
type Instance struct {
	Saga   string `json:"saga"`
	Key    string `json:"key"`
	Status Status `json:"status"`
	// Stuck says a timer or compensation ran out of attempts: the saga
	// waits for Runtime.Retry.
	Stuck bool `json:"stuck"`
	// State is the state's JSON as stored (StateVersion is its schema).
	State        json.RawMessage `json:"state"`
	StateVersion int             `json:"state_version"`
	// Version counts the steps applied.
	Version int64 `json:"version"`
	// Compensations are the registered compensations not run yet, oldest
	// first (they run newest first).
	Compensations []string  `json:"compensations,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// StepRecord is a step of a saga's history.
type StepRecord struct {
	// Step is "on <event type>", "timer <name>", "compensate", "retry" or
	// "abort".
	Step      string `json:"step"`
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	// Status is the saga's status after the step.
	Status   Status        `json:"status"`
	Error    string        `json:"error,omitempty"`
	At       time.Time     `json:"at"`
	Duration time.Duration `json:"duration"`
}

const instanceColumns = `saga_type, saga_key, status, stuck, state, state_version, version, compensations, last_error, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanInstance(s scanner) (Instance, error) {
	var in Instance
	var status, comps string
	var stuck int
	var state []byte
	var created, updated int64
	if err := s.Scan(&in.Saga, &in.Key, &status, &stuck, &state, &in.StateVersion, &in.Version, &comps, &in.LastError,
		&created, &updated); err != nil {
		return Instance{}, err
	}
	in.Status, in.Stuck, in.State = Status(status), stuck == 1, json.RawMessage(state)
	if comps != "" {
		_ = json.Unmarshal([]byte(comps), &in.Compensations)
	}
	in.CreatedAt, in.UpdatedAt = time.UnixMicro(created).UTC(), time.UnixMicro(updated).UTC()
	return in, nil
}

// Get returns the saga named name with key key, or ErrNotFound.
func (r *Runtime) Get(ctx context.Context, name, key string) (Instance, error) {
	if r.db == nil { // no saga registered
		return Instance{}, ErrNotFound
	}
	rows, err := fxrepo.DB(ctx, r.db).Raw(`SELECT `+instanceColumns+` FROM marty_saga WHERE saga_type = ? AND saga_key = ?`,
		name, key).Rows()
	if err != nil {
		return Instance{}, fmt.Errorf("saga: get: %w", err)
	}
	defer func() { _ = rows.Close() }()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Instance{}, fmt.Errorf("saga: get: %w", err)
		}
		return Instance{}, ErrNotFound
	}
	in, err := scanInstance(rows)
	if err != nil {
		return Instance{}, fmt.Errorf("saga: get: %w", err)
	}
	return in, nil
}

// Load returns the saga's state decoded (and upgraded) into S, with the
// stored instance.
func (d *Definition[S]) Load(ctx context.Context, r *Runtime, key string) (*S, Instance, error) {
	in, err := r.Get(ctx, d.c.name, key)
	if err != nil {
		return nil, Instance{}, err
	}
	st, err := d.c.decodeState(in.State, in.StateVersion)
	if err != nil {
		return nil, in, err
	}
	return st.(*S), in, nil
}

// Filter selects sagas for List.
type Filter struct {
	// Saga is the saga's name ("" for every saga).
	Saga string
	// Status keeps only sagas of these statuses (none: every status).
	Status []Status
	// Stuck keeps only stuck sagas.
	Stuck bool
	// Limit caps the result (default 100); newest updates first.
	Limit int
}

// List returns the sagas that f selects, most recently updated first.
func (r *Runtime) List(ctx context.Context, f Filter) ([]Instance, error) {
	if r.db == nil { // no saga registered
		return nil, nil
	}
	q := `SELECT ` + instanceColumns + ` FROM marty_saga WHERE 1 = 1`
	var args []any
	if f.Saga != "" {
		q += " AND saga_type = ?"
		args = append(args, f.Saga)
	}
	if len(f.Status) > 0 {
		ss := make([]string, len(f.Status))
		for i, s := range f.Status {
			ss[i] = string(s)
		}
		q += " AND status IN ?"
		args = append(args, ss)
	}
	if f.Stuck {
		q += " AND stuck = 1"
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	q += " ORDER BY updated_at DESC LIMIT ?"
	args = append(args, f.Limit)
	rows, err := fxrepo.DB(ctx, r.db).Raw(q, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []Instance
	for rows.Next() {
		in, err := scanInstance(rows)
		if err != nil {
			return nil, fmt.Errorf("saga: list: %w", err)
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// History returns the saga's steps, oldest first.
func (r *Runtime) History(ctx context.Context, name, key string) ([]StepRecord, error) {
	if r.db == nil { // no saga registered
		return nil, ErrNotFound
	}
	rows, err := fxrepo.DB(ctx, r.db).Raw(`SELECT step, event_id, event_type, status, error, at, duration_us FROM marty_saga_step
		WHERE saga_type = ? AND saga_key = ? ORDER BY id`, name, key).Rows()
	if err != nil {
		return nil, fmt.Errorf("saga: history: %w", err)
	}
	defer func() { _ = rows.Close() }()
	var out []StepRecord
	for rows.Next() {
		var s StepRecord
		var status string
		var at, dur int64
		if err := rows.Scan(&s.Step, &s.EventID, &s.EventType, &status, &s.Error, &at, &dur); err != nil {
			return nil, fmt.Errorf("saga: history: %w", err)
		}
		s.Status, s.At, s.Duration = Status(status), time.UnixMicro(at).UTC(), time.Duration(dur)*time.Microsecond
		out = append(out, s)
	}
	return out, rows.Err()
}

// Retry makes a stuck saga's parked timers and compensations due now, with
// their attempts reset; it returns ErrNotFound for no such saga.
func (r *Runtime) Retry(ctx context.Context, name, key string) error {
	err := r.uow.Do(ctx, func(ctx context.Context) error {
		db := fxrepo.DB(ctx, r.db)
		row, err := r.lockSaga(db, name, key, false)
		if errors.Is(err, errNoSaga) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		now := time.Now().UnixMicro()
		if err := db.Exec(`UPDATE marty_saga_timer SET parked = 0, attempts = 0, due_at = ? WHERE saga_type = ? AND saga_key = ? AND parked = 1`,
			now, name, key).Error; err != nil {
			return err
		}
		if err := db.Exec(`UPDATE marty_saga SET stuck = 0, updated_at = ? WHERE saga_type = ? AND saga_key = ?`, now, name, key).Error; err != nil {
			return err
		}
		return r.history(db, name, key, "retry", "", "", row.status, "", now, 0)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("saga: retry %s %s: %w", name, key, err)
	}
	r.signal()
	return nil
}

// Abort ends an open saga as aborted without running its compensations;
// its timers are removed. It returns ErrNotFound for no such saga.
func (r *Runtime) Abort(ctx context.Context, name, key string) error {
	var from Status
	err := r.uow.Do(ctx, func(ctx context.Context) error {
		db := fxrepo.DB(ctx, r.db)
		row, err := r.lockSaga(db, name, key, false)
		if errors.Is(err, errNoSaga) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		from = row.status
		if !row.status.Open() {
			return fmt.Errorf("it is %s", row.status)
		}
		now := time.Now().UnixMicro()
		if err := db.Exec(`DELETE FROM marty_saga_timer WHERE saga_type = ? AND saga_key = ?`, name, key).Error; err != nil {
			return err
		}
		if err := db.Exec(`UPDATE marty_saga SET status = ?, stuck = 0, version = version + 1, updated_at = ? WHERE saga_type = ? AND saga_key = ?`,
			string(StatusAborted), now, name, key).Error; err != nil {
			return err
		}
		return r.history(db, name, key, "abort", "", "", StatusAborted, "", now, 0)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return err
		}
		return fmt.Errorf("saga: abort %s %s: %w", name, key, err)
	}
	r.m.transition(name, from, StatusAborted)
	return nil
}
