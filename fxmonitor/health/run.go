package health

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
)

func (h *Health) loop(s *checkState) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		dur, err := h.execute(s)
		if h.ctx.Err() != nil {
			return
		}
		if h.record(s, err, dur) {
			h.recompute()
		}
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
	}
}

var (
	errStopped       = errors.New("health checks are stopped")
	errStillRunning  = errors.New("previous run has not returned yet")
	errCheckPanicked = errors.New("check panicked")
)

// execute runs the check's Func bounded by its Timeout. A Func that ignores
// its context is abandoned at the timeout (and not run again until it
// returns).
func (h *Health) execute(s *checkState) (time.Duration, error) {
	if !s.inflight.CompareAndSwap(false, true) {
		return 0, fmt.Errorf("timed out after %s: %w", s.Timeout, errStillRunning)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(h.ctx, s.Timeout)
	defer cancel()
	done := make(chan error, 1)
	if !h.spawn(func() {
		err := call(ctx, s.Func)
		s.inflight.Store(false)
		done <- err
	}) {
		s.inflight.Store(false)
		return 0, errStopped
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		if h.ctx.Err() != nil {
			return time.Since(start), errStopped
		}
		select {
		case err = <-done: // it returned at the same moment
		default:
			return time.Since(start), fmt.Errorf("timed out after %s", s.Timeout)
		}
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && h.ctx.Err() == nil {
		if err == context.DeadlineExceeded { //nolint:errorlint // the bare context error says nothing more
			err = fmt.Errorf("timed out after %s", s.Timeout)
		} else {
			err = fmt.Errorf("timed out after %s: %w", s.Timeout, err)
		}
	}
	return time.Since(start), err
}

func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errCheckPanicked, r)
		}
	}()
	return fn(ctx)
}

// record stores a run's result, logs and exports a transition, and reports
// whether there was one (the caller then recomputes the aggregates).
func (h *Health) record(s *checkState, err error, dur time.Duration) bool {
	now := time.Now()
	s.observe.Observe(dur.Seconds())
	s.mu.Lock()
	s.lastRun, s.dur, s.err = now, dur, err
	old := s.status
	if err == nil {
		s.fails = 0
		s.status = StatusPassing
	} else {
		s.fails++
		s.lastErr, s.lastErrAt = err, now
		if s.fails >= s.FailureThreshold {
			s.status = StatusFailing
		}
	}
	changed := s.status != old
	if changed {
		s.since = now
	}
	status, fails := s.status, s.fails
	s.mu.Unlock()
	if !changed {
		return false
	}
	v := 0.0
	if status == StatusPassing {
		v = 1
	}
	for _, g := range s.gauges {
		if g != nil {
			g.Set(v)
		}
	}
	if status == StatusFailing {
		s.failing.Set(1)
	} else {
		s.failing.Set(0)
	}
	fields := []zap.Field{zap.String("check", s.Name), zap.String("kinds", s.Kinds.String()),
		zap.Bool("critical", s.Critical), zap.String("from", old.String()), zap.String("to", status.String())}
	switch {
	case status == StatusFailing:
		h.log.Warn("health check failing", append(fields, zap.Int("consecutive_failures", fails), zap.Error(err))...)
	case old == StatusFailing:
		h.log.Info("health check recovered", fields...)
	default:
		h.log.Info("health check passing", fields...)
	}
	return true
}

// refresh runs an on-request check whose cached result is older than the
// TTL; a caller finding a run in progress waits for it (or for ctx).
func (h *Health) refresh(ctx context.Context, s *checkState, now time.Time) {
	s.mu.Lock()
	if s.background || (!s.lastRun.IsZero() && now.Sub(s.lastRun) < h.ttl) {
		s.mu.Unlock()
		return
	}
	if s.running {
		ch := s.done
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	s.running = true
	ch := make(chan struct{})
	s.done = ch
	s.mu.Unlock()
	dur, err := h.execute(s)
	changed := !errors.Is(err, errStopped) && h.record(s, err, dur)
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	close(ch)
	// After the waiters are released: a listener may call Healthy.
	if changed {
		h.recompute()
	}
}

// stale reports whether an on-request check needs a run.
func (h *Health) stale(s *checkState, now time.Time) bool {
	if s.background {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running || s.lastRun.IsZero() || now.Sub(s.lastRun) >= h.ttl
}

// evaluate brings the checks of a kind up to date: stale on-request checks
// run concurrently. With every result cached it does not allocate.
func (h *Health) evaluate(ctx context.Context, kind Kind) {
	i := kind.index()
	if i < 0 {
		return
	}
	if kind == Startup && h.startupDone.Load() {
		return
	}
	if kind == Readiness && !h.startupDone.Load() {
		h.evaluate(ctx, Startup)
	}
	now := time.Now()
	n := 0
	for _, s := range h.byKind[i] {
		if h.stale(s, now) {
			n++
		}
	}
	if n == 0 {
		return
	}
	h.refreshAll(ctx, h.byKind[i], now, n)
}

func (h *Health) refreshAll(ctx context.Context, checks []*checkState, now time.Time, n int) {
	var wg sync.WaitGroup
	for _, s := range checks {
		if !h.stale(s, now) {
			continue
		}
		n--
		if n == 0 { // the last one runs in this goroutine
			h.refresh(ctx, s, now)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.refresh(ctx, s, now)
		}()
	}
	wg.Wait()
}

// aggregate computes a kind's health from the cached statuses.
func (h *Health) aggregate(kind Kind) bool {
	i := kind.index()
	switch kind {
	case Startup:
		if h.startupDone.Load() {
			return true
		}
	case Readiness:
		if h.stopping.Load() || !h.startupDone.Load() || !h.appStarted() {
			return false
		}
	}
	for _, s := range h.byKind[i] {
		if !s.Critical {
			continue
		}
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		if st != StatusPassing {
			return false
		}
	}
	return true
}

// recompute updates the aggregates and notifies listeners of transitions,
// in order, outside any lock a listener could need.
func (h *Health) recompute() {
	h.mu.Lock()
	for i, k := range kinds {
		v := h.aggregate(k)
		if k == Startup && v && !h.startupDone.Load() {
			h.startupDone.Store(true)
			h.log.Info("startup checks passed")
		}
		if v != h.agg[i] {
			h.agg[i] = v
			h.queue = append(h.queue, aggChange{k, v})
		}
	}
	if h.delivering || len(h.queue) == 0 {
		h.mu.Unlock()
		return
	}
	h.delivering = true
	for len(h.queue) > 0 {
		c := h.queue[0]
		h.queue = h.queue[1:]
		fns := h.listeners
		h.mu.Unlock()
		for _, fn := range fns {
			fn(c.kind, c.healthy)
		}
		h.mu.Lock()
	}
	h.delivering = false
	h.mu.Unlock()
}
