// Package e2e holds the example's end-to-end test: it builds the orders and
// notifier binaries, runs two orders replicas and the notifier as processes
// on PostgreSQL (MARTY_TEST_POSTGRES_DSN) and NATS JetStream
// (MARTY_TEST_NATS_URL) with the outbox and OTLP tracing, drives concurrent
// gRPC and REST load, stops one replica with SIGTERM mid-load, and checks
// what a user of the framework is promised. TestSIGTERMUnderLoadFailsNoAcceptedRequest
// needs neither: one orders process on SQLite, REST and gRPC load, SIGTERM,
// and no request the server accepted fails.
package e2e
