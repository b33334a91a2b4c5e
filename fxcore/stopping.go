package fxcore

import "sync"

// Stopping is the app-wide "shutdown has begun" signal. Servers call Begin
// first thing in their OnStop, so readiness turns NOT_SERVING before any
// listener closes, whatever order the stop hooks run in; health modules
// subscribe with OnBegin. Begin is idempotent.
type Stopping struct {
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	fns  []func()
}

// NewStopping returns a Stopping that has not begun.
func NewStopping() *Stopping { return &Stopping{done: make(chan struct{})} }

// Begin marks the start of shutdown and runs the listeners, once.
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
