// Package fxtest boots a whole martyfx service in-process for a test, with
// test defaults, and gives the test handles on everything it may want to
// assert: the gRPC and HTTP servers, the recorded spans and logs, the
// published events, the metrics registry and the database.
//
//	func TestCreateOrder(t *testing.T) {
//		app := fxtest.New(t, orders.Module)
//		var out OrderView
//		require.Equal(t, 201, app.HTTP().PostJSON("/v1/orders", Order{Item: "book"}, &out))
//		fxtest.RequirePublished[OrderCreated](app)
//		app.RequireSpan("POST /v1/orders")
//	}
//
// New builds the app from every martyfx module (DefaultModules, or the subset
// given with WithModules) plus the test's options, starts it (failing the test
// with Fx's error when it does not start) and stops it when the test ends
// (failing the test when the stop fails). The defaults: servers on
// 127.0.0.1:0, a private in-memory SQLite database (Postgres(t) for a fresh
// PostgreSQL database), the memory bus in synchronous mode (Async for the
// queued mode), spans to an in-memory recorder, logs to an observer printed
// through t.Log when the test fails, a fresh Prometheus registry, and config
// from the test's own environment (Env) so the process environment never
// leaks in.
//
// Overrides: Replace and Decorate (interface types included, with As),
// and Config to change one field of a module's config.
//
// The harness options (Env, WithModules, Postgres, Async, WaitTimeout) are
// fx.Options of a type of their own, which New recognises and reads; given
// anywhere else (inside fx.Options or fx.Module, or to fx.New) they fail the
// app with a message saying so. A build or start failure fails the test
// with its root cause first, on one line, then Fx's whole error once
// (fxcore.DescribeError).
//
// # Without Fx
//
// MemoryStore (NewMemoryStore) and StoreContract need no app: they test a
// store, or code that takes one, directly. TransportContract builds its own
// apps on the transport a factory describes (TransportTarget) and checks
// what every fxevents transport promises.
//
// Fakes and services: MemoryStore is an in-memory fxrepo.Store with the
// repository's semantics (StoreContract proves it), VerifyNoLeaks is the
// TestMain of a package that uses fxtest. An embedded JetStream server for a
// test is natsdev.RunForTest (package fxevents/natsjs/natsdev), kept out of
// fxtest so that test binaries link nats-server only when they start one.
//
// # Test kinds
//
// The Go way for unit, integration and performance tests:
//
//   - Unit tests run everywhere, always, with `go test ./...`; an app on
//     SQLite and the memory bus is a unit test: it needs nothing installed.
//   - Integration tests call Integration(t, NeedPostgres, NeedNATS ...) first:
//     it skips them under `go test -short` and when a service they need is
//     not configured (MARTY_TEST_POSTGRES_DSN, MARTY_TEST_NATS_URL,
//     MARTY_TEST_REDIS_URL, MARTY_TEST_RABBITMQ_URL) or not reachable, with
//     a message saying what to set.
//   - Performance tests (TestPerf...) call Performance(t) first: they run
//     only with MARTY_TEST_PERF=1, drive load with the subpackage
//     fxtest/load and assert on what it measured; CI runs them apart, with
//     the speed assertions reporting instead of failing. Micro-benchmarks
//     against bare libraries and peers live in bench/.
package fxtest
