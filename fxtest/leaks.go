package fxtest

import (
	"testing"

	"go.uber.org/goleak"
)

// LeakIgnores are the goroutines VerifyNoLeaks tolerates: long-lived
// goroutines that libraries start once per process and never stop, so they
// are not leaks of a test.
var LeakIgnores = []goleak.Option{
	// database/sql starts one opener goroutine per *sql.DB; the pool of a
	// database closed by a test may still be winding it down when goleak
	// looks (it exits as soon as the closed DB's context is noticed).
	goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	// The OpenCensus bridge some exporters pull in starts a worker at init.
	goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	// glebarez/sqlite's pure-Go driver keeps no goroutines, but modernc's
	// libc may park one signal handler per process.
	goleak.IgnoreAnyFunction("modernc.org/libc.(*TLS).setErrno"),
}

// VerifyNoLeaks runs the package's tests and then fails if goroutines are
// left behind, ignoring LeakIgnores and extra. Use it as the TestMain of a
// package that uses fxtest:
//
//	func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }
func VerifyNoLeaks(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(append([]goleak.Option{}, LeakIgnores...), extra...)...)
}
