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
package main

import (
	"os"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/example/internal/broker"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
)

func main() {
	opts := []fx.Option{service.Module, fx.Invoke(service.PrintUsage)}
	if broker.Enabled(os.Environ()) {
		opts = append(opts, broker.Options(os.Environ())...)
	} else {
		opts = append(opts, notifier.Module)
	}
	martyfx.Run(opts...)
}
