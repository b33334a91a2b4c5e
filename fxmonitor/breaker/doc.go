// Package breaker gives an app named circuit breakers, configured per name,
// with their state and calls exported as Prometheus metrics
// (marty_circuit_breaker_state, marty_circuit_breaker_requests_total) and
// their transitions logged. It is built on sony/gobreaker v2, which stays an
// implementation detail: State, Counts and ErrOpen are this package's own.
//
// With Fx, fxmonitor.Module provides *Breakers, configured from
// MARTY_MONITOR_BREAKER_<FIELD> (every breaker) and
// MARTY_MONITOR_BREAKERS_<NAME>_<FIELD> (one breaker); fxgrpc's named clients
// take their breakers from it.
//
// # Without Fx
//
// New takes a Config (validated) and plain Options:
//
//	bs, err := breaker.New(breaker.Config{
//		Named: map[string]breaker.Settings{"payments": {Timeout: 10 * time.Second}},
//	}, breaker.Options{Registerer: reg, Logger: log})
//	if err != nil {
//		return err
//	}
//	err = bs.Get("payments").Execute(func() error { return callPayments(ctx) })
//	if errors.Is(err, breaker.ErrOpen) {
//		// failed fast: the call was not made
//	}
//
// Errors start with "fxmonitor:", like those of every fxmonitor package.
package breaker
