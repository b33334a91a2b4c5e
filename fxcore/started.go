package fxcore

import "sync"

// startGate is the Stopping's other half: the app counts as started once
// every server that declared itself (ExpectStart, at construction) listens,
// so readiness does not report a pod ready while a later start hook — the
// gRPC listener after the HTTP one, say — is still to run.
type startGate struct {
	mu      sync.Mutex
	pending int
	ch      chan struct{} // closed when pending drops to 0; nil while none is pending
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// ExpectStart declares a server that must be listening before the app
// counts as started; call it while building the server (before the app
// starts) and call the returned func, once, when the server listens.
func (s *Stopping) ExpectStart() (started func()) {
	g := &s.start
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == 0 {
		g.ch = make(chan struct{})
	}
	g.pending++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.pending--
			if g.pending == 0 {
				close(g.ch)
				g.ch = nil
			}
		})
	}
}

// Started is closed once every server declared with ExpectStart listens;
// it is an already closed channel while none is pending. Readiness waits
// for it (fxmonitor).
func (s *Stopping) Started() <-chan struct{} {
	g := &s.start
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == 0 {
		return closedChan
	}
	return g.ch
}
