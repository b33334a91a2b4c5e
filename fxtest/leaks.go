package fxtest

import (
	"testing"

	"go.uber.org/goleak"
)

// LeakIgnores are the goroutines VerifyNoLeaks tolerates because a library,
// not the test, owns their end.
var LeakIgnores = []goleak.Option{
	// database/sql starts one opener goroutine per *sql.DB; the pool of a
	// database closed by a test may still be winding it down when goleak
	// looks (it exits as soon as the closed DB's context is noticed).
	goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
}

// VerifyNoLeaks runs the package's tests and then fails if goroutines are
// left behind, ignoring LeakIgnores and extra. Use it as the TestMain of a
// package that uses fxtest:
//
//	func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }
func VerifyNoLeaks(m *testing.M, extra ...goleak.Option) {
	goleak.VerifyTestMain(m, append(append([]goleak.Option{}, LeakIgnores...), extra...)...)
}
