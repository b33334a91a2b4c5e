package fxcore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// StopOrder orders the stages of the stop sequence: lower orders stop first,
// stages of the same order in the order they were added.
type StopOrder int

// The orders servers use. A module whose server calls another in-process
// server stops before it; the server that answers probes and metrics stops
// last.
const (
	// StopFront is a server whose handlers may call a StopBack server of
	// the same process (the public HTTP server, whose REST gateway calls
	// the gRPC server): it drains while the back servers still serve it.
	StopFront StopOrder = 100
	// StopBack is a server that front servers call (the gRPC server).
	StopBack StopOrder = 200
	// StopAdmin is the server of probes and /metrics: it answers until
	// every other server has stopped.
	StopAdmin StopOrder = 300
)

// StopStage is one server's part of the stop sequence.
type StopStage struct {
	// Name names the stage in logs and errors ("http api", "grpc").
	Name string
	// Order places the stage in the sequence.
	Order StopOrder
	// DrainDelay is how long load balancers need to see readiness fail
	// before this server's listener may close. The sequence waits the
	// largest DrainDelay of its stages once, not one per stage.
	DrainDelay time.Duration
	// Stop stops the server gracefully within ctx (listener closed, work in
	// flight completed) and, when ctx ends first, hard: the work still
	// running is cut off and the error says so.
	Stop func(ctx context.Context) error
}

// Stopping is the app's stop sequence and its "shutdown has begun" signal.
//
// Servers add a StopStage when they start listening (AddStage) and call
// their Stage's Stop from their stop hook. Whichever call comes first runs
// the whole sequence, exactly once:
//
//  1. Begin: the OnBegin listeners run, so readiness fails on every server
//     at once (HTTP /readyz 503, gRPC health NOT_SERVING) while every
//     listener is still open;
//  2. the largest DrainDelay of the stages, waited once (cut short when the
//     stop context ends);
//  3. each stage's Stop in order (StopFront, StopBack, StopAdmin), each
//     bounded by the stop context.
//
// The other servers' hooks wait for it and return their own stage's error,
// so the order of Fx's stop hooks does not matter. martyfx.Run and fxtest
// call Stop before the app's stop hooks, so that the servers drain before
// any other module (event relay, dispatcher, database) stops.
//
// Begin alone (without the sequence) only turns readiness off; it is
// idempotent, and so is Stop.
type Stopping struct {
	once sync.Once
	done chan struct{}
	log  *zap.Logger

	mu       sync.Mutex
	fns      []func()
	stages   []*Stage
	running  bool          // the sequence has begun: later stages run alone
	finished chan struct{} // closed when the sequence is over
	err      error

	// wait waits d or until ctx ends; replaced by tests.
	wait func(ctx context.Context, d time.Duration) error

	start startGate // ExpectStart, Started
}

// StoppingOption configures NewStopping.
type StoppingOption func(*Stopping)

// WithStopLogger logs the stop sequence (the drain and one line with its
// duration when it finishes) to log; by default it is not logged.
func WithStopLogger(log *zap.Logger) StoppingOption {
	return func(s *Stopping) {
		if log != nil {
			s.log = log
		}
	}
}

// NewStopping returns a Stopping that has not begun.
func NewStopping(opts ...StoppingOption) *Stopping {
	s := &Stopping{done: make(chan struct{}), finished: make(chan struct{}), log: zap.NewNop(), wait: sleep}
	for _, o := range opts {
		o(s)
	}
	return s
}

// newStopping is fxcore.Module's constructor: the sequence logs through the
// app's logger.
func newStopping(log *zap.Logger) *Stopping {
	return NewStopping(WithStopLogger(log.Named("stop")))
}

// Begin marks the start of shutdown and runs the listeners, once. It does
// not stop anything: Stop does.
func (s *Stopping) Begin() {
	s.once.Do(func() {
		close(s.done)
		s.mu.Lock()
		fns := s.fns
		s.fns = nil
		s.mu.Unlock()
		for _, fn := range fns {
			fn()
		}
	})
}

// Done is closed when shutdown has begun.
func (s *Stopping) Done() <-chan struct{} { return s.done }

// Begun reports whether shutdown has begun.
func (s *Stopping) Begun() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// OnBegin registers fn to run when shutdown begins (at once if it has).
func (s *Stopping) OnBegin(fn func()) {
	s.mu.Lock()
	if !s.Begun() {
		s.fns = append(s.fns, fn)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	fn()
}

// Stage is a StopStage added to a Stopping.
type Stage struct {
	s     *Stopping
	st    StopStage
	alone bool // added after the sequence began: stops on its own

	once sync.Once
	done chan struct{}
	err  error
}

// AddStage adds st to the sequence. A server adds its stage once it
// listens, so that a server that never started adds no drain delay. A stage
// added after the sequence has begun is not part of it: its Stop stops it
// at once (readiness is already off and the drain is over).
func (s *Stopping) AddStage(st StopStage) *Stage {
	if st.Stop == nil {
		st.Stop = func(context.Context) error { return nil }
	}
	g := &Stage{s: s, st: st, done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		g.alone = true
		return g
	}
	s.stages = append(s.stages, g)
	return g
}

// Stop runs the app's stop sequence if it has not begun, waits until this
// stage has stopped and returns the stage's error; the first stage to stop
// also returns the error of a drain delay cut short. When ctx ends before
// another caller's sequence reaches this stage, the error says so.
func (g *Stage) Stop(ctx context.Context) error {
	if g.alone {
		g.finish(ctx, nil)
		return g.err
	}
	g.s.run(ctx)
	select {
	case <-g.done: // the sequence ran here, or has reached this stage
		return g.err
	default:
	}
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		return fmt.Errorf("fxcore: stop stage %q: the stop deadline came before the stop sequence reached it: %w", g.st.Name, ctx.Err())
	}
}

// finish runs the stage's Stop once; drainErr is joined to its error.
func (g *Stage) finish(ctx context.Context, drainErr error) {
	g.once.Do(func() {
		g.err = errors.Join(drainErr, g.st.Stop(ctx))
		close(g.done)
	})
}

// Stop runs the stop sequence (see Stopping) if it has not begun and
// returns its errors: a drain delay cut short by ctx, and every stage's.
// A second call waits for the first one's sequence (or its own ctx).
func (s *Stopping) Stop(ctx context.Context) error {
	s.run(ctx)
	select {
	case <-s.finished: // it ran here, or has finished
		return s.err
	default:
	}
	select {
	case <-s.finished:
		return s.err
	case <-ctx.Done():
		return fmt.Errorf("fxcore: waiting for the stop sequence: %w", ctx.Err())
	}
}

// run runs the sequence in the calling goroutine unless it has begun.
func (s *Stopping) run(ctx context.Context) {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return
	}
	s.running = true
	stages := slices.Clone(s.stages)
	s.mu.Unlock()

	began := time.Now()
	s.Begin()

	slices.SortStableFunc(stages, func(a, b *Stage) int { return int(a.st.Order) - int(b.st.Order) })
	var drain time.Duration
	for _, g := range stages {
		drain = max(drain, g.st.DrainDelay)
	}
	var drainErr error
	if drain > 0 {
		s.log.Info("stop sequence: readiness is off, waiting the drain delay before the listeners close",
			zap.Duration("drain_delay", drain))
		if err := s.wait(ctx, drain); err != nil {
			drainErr = fmt.Errorf("fxcore: the stop deadline cut the drain delay (%s) short, stopping hard: %w", drain, err)
			s.log.Warn("stop deadline during the drain delay: stopping the servers hard", zap.Duration("drain_delay", drain))
		}
	}

	names := make([]string, 0, len(stages))
	took := make([]time.Duration, 0, len(stages))
	var errs []error
	for i, g := range stages {
		var de error
		if i == 0 {
			de = drainErr
		}
		t := time.Now()
		g.finish(ctx, de)
		names = append(names, g.st.Name)
		took = append(took, time.Since(t))
		s.log.Debug("stop stage done", zap.String("stage", g.st.Name), zap.Duration("duration", took[i]), zap.Error(g.err))
		errs = append(errs, g.err)
	}
	err := errors.Join(errs...)

	fields := []zap.Field{
		zap.Duration("duration", time.Since(began)), zap.Duration("drain_delay", drain),
		zap.Strings("stages", names), zap.Durations("stage_durations", took),
	}
	if err != nil {
		s.log.Warn("stop sequence finished with errors", append(fields, zap.Error(err))...)
	} else {
		s.log.Info("stop sequence finished", fields...)
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.finished)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
