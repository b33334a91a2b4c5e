package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/martyfx/martyfx/fxevents"
)

// Status is where a saga is in its life.
type Status string

// The statuses of a saga.
const (
	// StatusRunning: steps react to events and timers.
	StatusRunning Status = "running"
	// StatusCompleted: a step called Complete; nothing runs any more.
	StatusCompleted Status = "completed"
	// StatusCompensating: a step called Fail; the registered compensations
	// run, newest first, each once.
	StatusCompensating Status = "compensating"
	// StatusCompensated: every compensation ran.
	StatusCompensated Status = "compensated"
	// StatusAborted: an operator aborted it (Runtime.Abort).
	StatusAborted Status = "aborted"
)

// Open reports whether the saga still has work to do (running or
// compensating).
func (s Status) Open() bool { return s == StatusRunning || s == StatusCompensating }

// compensateTimer is the timer that runs the next compensation.
const compensateTimer = "$compensate"

// Saga is a saga definition: a *Definition[S], what AsSaga and
// RuntimeOptions.Sagas take.
type Saga interface {
	// Name is the saga's type name, unique in the app.
	Name() string
	definition() *core
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

// core is the untyped part of a definition the runtime drives.
type core struct {
	name         string
	stateVersion int
	upgrade      func(from int, state []byte) ([]byte, error)
	newState     func() any // a *S
	steps        map[string]*eventStep
	order        []string // event types in registration order
	timers       map[string]stepFunc
	comps        map[string]stepFunc
	errs         []error
}

// stepFunc runs a timer's or a compensation's step.
type stepFunc func(sc *stepCore) error

type eventStep struct {
	name   string // "on <event type>"
	starts bool
	decode func(codec fxevents.Codec, env fxevents.Envelope) (any, error)
	key    func(ev any) string
	run    func(sc *stepCore, ev any) error
}

// Definition is a saga type: a state struct S and the steps that change
// it. Build it with New, then Start, On, OnTimer and Compensation; hand it
// to AsSaga (or RuntimeOptions.Sagas). It is not safe to change once the
// runtime uses it.
type Definition[S any] struct {
	c *core
}

// New returns an empty definition of the saga named name (lower case
// letters, digits, ".", "_", "-"; it names the saga's rows, its event
// handler "saga.<name>", metrics and spans). S is the state: a struct
// stored as JSON, so its exported fields (or json tags) are what persists.
func New[S any](name string) *Definition[S] {
	c := &core{
		name: name, stateVersion: 1,
		newState: func() any { return new(S) },
		steps:    map[string]*eventStep{}, timers: map[string]stepFunc{}, comps: map[string]stepFunc{},
	}
	if !validName.MatchString(name) {
		c.errs = append(c.errs, fmt.Errorf("saga: name %q must match %s", name, validName))
	}
	return &Definition[S]{c: c}
}

// Name is the saga's name.
func (d *Definition[S]) Name() string { return d.c.name }

func (d *Definition[S]) definition() *core { return d.c }

// StateVersion sets the schema version of S (1 by default). A saga stored
// by an older build with a lower version is passed through upgrade (with
// its JSON and the version it was stored at) before it is decoded into S;
// it is stored back at version v after its next step.
func (d *Definition[S]) StateVersion(v int, upgrade func(from int, state []byte) ([]byte, error)) *Definition[S] {
	if v < 1 || (v > 1 && upgrade == nil) {
		d.c.errs = append(d.c.errs, fmt.Errorf("saga %s: StateVersion(%d) needs a version >= 1 and, above 1, an upgrade func", d.c.name, v))
	}
	d.c.stateVersion, d.c.upgrade = v, upgrade
	return d
}

// OnTimer registers the step that runs when the timer named name fires
// (Step.Schedule sets it). It runs once, on one replica, even after
// restarts; a step that returns an error is retried with backoff and,
// after MARTY_SAGA_MAX_ATTEMPTS, leaves the saga stuck until
// Runtime.Retry.
func (d *Definition[S]) OnTimer(name string, fn func(s *Step[S]) error) *Definition[S] {
	d.add(d.c.timers, "timer", name, fn)
	return d
}

// Compensation registers a compensating action: a step that registered it
// with Step.AddCompensation has it run, in reverse order of registration,
// once the saga fails (Step.Fail). Each runs exactly once: its effects,
// its emitted events and its removal from the saga commit together. A
// compensation that returns an error is retried with backoff and, after
// MARTY_SAGA_MAX_ATTEMPTS, leaves the saga stuck until Runtime.Retry.
func (d *Definition[S]) Compensation(name string, fn func(s *Step[S]) error) *Definition[S] {
	d.add(d.c.comps, "compensation", name, fn)
	return d
}

func (d *Definition[S]) add(m map[string]stepFunc, what, name string, fn func(s *Step[S]) error) {
	switch {
	case name == "" || name[0] == '$':
		d.c.errs = append(d.c.errs, fmt.Errorf("saga %s: %s name %q must not be empty or start with $", d.c.name, what, name))
	case fn == nil:
		d.c.errs = append(d.c.errs, fmt.Errorf("saga %s: %s %q has a nil func", d.c.name, what, name))
	case m[name] != nil:
		d.c.errs = append(d.c.errs, fmt.Errorf("saga %s: %s %q registered twice", d.c.name, what, name))
	default:
		m[name] = func(sc *stepCore) error { return fn(&Step[S]{State: sc.state.(*S), c: sc}) }
	}
}

// Start registers the step that runs for events of type E, correlated by
// key(E), and starts the saga when none exists for that key (an existing,
// running one just runs the step).
func Start[E fxevents.Event, S any](d *Definition[S], key func(E) string, fn func(s *Step[S], ev E) error) {
	on(d, true, key, fn)
}

// On registers the step that runs for events of type E, correlated by
// key(E), on the running saga of that key. An event for which no saga
// exists, or whose saga is no longer running, is ignored (counted in
// marty_saga_ignored_total). The step, the saga's new state, the events it
// emits and the inbox mark of the event commit in one transaction: each
// event takes effect once, whatever crashes.
func On[E fxevents.Event, S any](d *Definition[S], key func(E) string, fn func(s *Step[S], ev E) error) {
	on(d, false, key, fn)
}

func on[E fxevents.Event, S any](d *Definition[S], starts bool, key func(E) string, fn func(s *Step[S], ev E) error) {
	var zero E
	t := reflect.TypeOf(&zero).Elem()
	var proto E
	if t.Kind() == reflect.Pointer {
		proto = reflect.New(t.Elem()).Interface().(E)
	}
	typ := proto.EventType()
	switch {
	case key == nil || fn == nil:
		d.c.errs = append(d.c.errs, fmt.Errorf("saga %s: the step on %s needs a key func and a step func", d.c.name, typ))
		return
	case d.c.steps[typ] != nil:
		d.c.errs = append(d.c.errs, fmt.Errorf("saga %s: two steps on event type %s", d.c.name, typ))
		return
	}
	d.c.order = append(d.c.order, typ)
	d.c.steps[typ] = &eventStep{
		name: "on " + typ, starts: starts,
		decode: func(codec fxevents.Codec, env fxevents.Envelope) (any, error) {
			if t.Kind() == reflect.Pointer {
				v := reflect.New(t.Elem()).Interface()
				if err := codec.Decode(env.ContentType(), env.Payload, v); err != nil {
					return nil, err
				}
				return v, nil
			}
			var v E
			if err := codec.Decode(env.ContentType(), env.Payload, &v); err != nil {
				return nil, err
			}
			return v, nil
		},
		key: func(ev any) string { return key(ev.(E)) },
		run: func(sc *stepCore, ev any) error { return fn(&Step[S]{State: sc.state.(*S), c: sc}, ev.(E)) },
	}
}

// check returns the definition's errors.
func (c *core) check() error {
	errs := append([]error(nil), c.errs...)
	if len(c.steps) == 0 {
		errs = append(errs, fmt.Errorf("saga %s: no step on an event (add one with saga.Start)", c.name))
	}
	starts := false
	for _, s := range c.steps {
		starts = starts || s.starts
	}
	if len(c.steps) > 0 && !starts {
		errs = append(errs, fmt.Errorf("saga %s: no step starts it (use saga.Start for the first event)", c.name))
	}
	return errors.Join(errs...)
}

// decodeState returns the stored state as a *S, upgraded to the current
// schema version.
func (c *core) decodeState(data []byte, version int) (any, error) {
	st := c.newState()
	if version < c.stateVersion {
		up, err := c.upgrade(version, data)
		if err != nil {
			return nil, fmt.Errorf("saga %s: upgrade state from version %d: %w", c.name, version, err)
		}
		data = up
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, st); err != nil {
			return nil, fmt.Errorf("saga %s: decode state: %w", c.name, err)
		}
	}
	return st, nil
}

// Step is what a step sees: the saga's State (change it in place) and the
// actions it may take. Everything it does commits with the step, or not at
// all if the step returns an error.
type Step[S any] struct {
	// State is the saga's state, loaded for this step and stored after it.
	State *S
	c     *stepCore
}

// stepCore is a step's untyped side.
type stepCore struct {
	ctx      context.Context
	rt       *Runtime
	def      *core
	key      string
	state    any
	status   Status
	comps    []string
	schedule map[string]time.Time
	cancel   map[string]bool
	failed   string
	label    string // the step's name in the history when it differs from the run's
}

// Context is the step's context: it carries the transaction (use
// fxrepo.DB(ctx, db) for the step's own database changes) and the span.
func (s *Step[S]) Context() context.Context { return s.c.ctx }

// Key is the saga's correlation key.
func (s *Step[S]) Key() string { return s.c.key }

// Status is the saga's status as the step leaves it so far.
func (s *Step[S]) Status() Status { return s.c.status }

// Emit publishes events through the outbox in the step's transaction: they
// are delivered only if the step commits, and once per commit.
func (s *Step[S]) Emit(events ...fxevents.Event) error {
	if err := s.c.rt.bus.Publish(s.c.ctx, events...); err != nil {
		return fmt.Errorf("saga %s: emit: %w", s.c.def.name, err)
	}
	return nil
}

// Schedule sets the timer named name (registered with OnTimer) to fire
// after d, replacing an earlier schedule of the same timer.
func (s *Step[S]) Schedule(name string, d time.Duration) error {
	return s.ScheduleAt(name, time.Now().Add(d))
}

// ScheduleAt sets the timer named name to fire at t.
func (s *Step[S]) ScheduleAt(name string, t time.Time) error {
	if s.c.def.timers[name] == nil {
		return fmt.Errorf("saga %s: no timer %q (register it with OnTimer)", s.c.def.name, name)
	}
	delete(s.c.cancel, name)
	s.c.schedule[name] = t
	return nil
}

// CancelTimer removes the timer named name, if set.
func (s *Step[S]) CancelTimer(name string) {
	delete(s.c.schedule, name)
	s.c.cancel[name] = true
}

// AddCompensation registers the compensation named name (see
// Definition.Compensation) to run if the saga fails later.
func (s *Step[S]) AddCompensation(name string) error {
	if s.c.def.comps[name] == nil {
		return fmt.Errorf("saga %s: no compensation %q (register it with Compensation)", s.c.def.name, name)
	}
	s.c.comps = append(s.c.comps, name)
	return nil
}

// Complete ends the saga successfully: its timers are removed and later
// events for it are ignored.
func (s *Step[S]) Complete() {
	if s.c.status == StatusRunning {
		s.c.status = StatusCompleted
	}
}

// Fail ends the saga's forward path: its timers are removed and its
// compensations run, newest first, until it is compensated. reason is kept
// in the saga's last_error and history.
func (s *Step[S]) Fail(reason string) {
	if s.c.status == StatusRunning {
		s.c.status = StatusCompensating
		s.c.failed = reason
	}
}
