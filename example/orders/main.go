// Command orders is the martyfx example service: orders.v1.OrderService over
// gRPC (:50051) and REST (:8080), admin endpoints on :9090. Run it with
//
//	go run ./example/orders
//
// It needs nothing installed: SQLite file orders.db, in-memory event bus,
// tracing off, and the notifier's handler in the same process (its
// notifications at GET /v1/notifications). With MARTY_NATS_URL (or
// MARTY_NATS_EMBEDDED=true) the events go to NATS JetStream instead and the
// notifier runs as its own service. See example/README.md.
//
// The embedded NATS server comes from example/internal/devnats; build with
// -tags nonatsdev (as the Dockerfile does) for a binary that only talks to a
// real NATS and links no nats-server.
package main

import (
	"fmt"
	"os"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/example/internal/broker"
	"github.com/martyfx/martyfx/example/internal/devnats"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"

	// SQLite: the embedded default database (MARTY_DB_DRIVER=sqlite).
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

func main() {
	opts := []fx.Option{service.Module, fx.Invoke(service.PrintUsage)}
	if err := devnats.Check(broker.Embedded(os.Environ())); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(2)
	}
	if broker.Enabled(os.Environ()) {
		opts = append(opts, broker.Options(os.Environ())...)
		opts = append(opts, devnats.Options()...)
	} else {
		opts = append(opts, notifier.Module)
	}
	martyfx.Run(opts...)
}
