package load_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/martyfx/martyfx/fxtest"
)

func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }

// fakeTB records what the assertions report instead of failing the real
// test: Fatalf records and ends the goroutine (run the code under test with
// run), Logf records.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	fatals []string
	logs   []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

// run runs fn on its own goroutine, so that Fatalf may end it, and reports
// whether fn returned normally.
func (f *fakeTB) run(fn func()) (completed bool) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
		completed = true
	}()
	<-done
	return completed
}

func (f *fakeTB) fatal() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.fatals, "\n")
}

func (f *fakeTB) logged() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.logs, "\n")
}
