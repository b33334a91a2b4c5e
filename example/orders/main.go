// Command orders is the martyfx example service: orders.v1.OrderService over
// gRPC (:50051) and REST (:8080), admin endpoints on :9090, and the order
// saga (orders → payment → confirm, or cancel and release). Run it with
//
//	go run ./example/orders
//
// It needs nothing installed: SQLite file orders.db, events through the
// transactional outbox relayed in process (the saga needs the outbox:
// MARTY_EVENTS_BUS defaults to outbox here), tracing off, and the notifier's
// and the payment service's handlers in the same process (their rows at GET
// /v1/notifications and GET /v1/payments). With MARTY_NATS_URL (or
// MARTY_NATS_EMBEDDED=true) the events go to NATS JetStream instead and the
// notifier and payment run as their own services. See example/README.md.
//
// The embedded NATS server comes from example/internal/devnats; build with
// -tags nonatsdev (as the Dockerfile does) for a binary that only talks to a
// real NATS and links no nats-server.
package main

import (
	"fmt"
	"os"
	"strings"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/example/internal/broker"
	"github.com/martyfx/martyfx/example/internal/devnats"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
	payment "github.com/martyfx/martyfx/example/payment/service"

	// SQLite: the embedded default database (MARTY_DB_DRIVER=sqlite).
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

func main() {
	if err := devnats.Check(broker.Embedded(os.Environ())); err != nil {
		fmt.Fprintln(os.Stderr, "orders:", err)
		os.Exit(2)
	}
	for _, kv := range defaultEnv(os.Environ()) {
		k, v, _ := strings.Cut(kv, "=")
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintln(os.Stderr, "orders:", err)
			os.Exit(2)
		}
	}
	opts := append(options(os.Environ()), fx.Invoke(service.PrintUsage))
	if broker.Enabled(os.Environ()) {
		opts = append(opts, devnats.Options()...)
	}
	martyfx.Run(opts...)
}

// defaultEnv is what the binary sets when environ does not: the outbox bus,
// which the order saga needs (MARTY_EVENTS_BUS=memory makes the start fail
// and say so).
func defaultEnv(environ []string) []string {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "MARTY_EVENTS_BUS=") {
			return nil
		}
	}
	return []string{"MARTY_EVENTS_BUS=outbox"}
}

// options are the service's modules: orders and its saga, plus the notifier
// and the payment service in process unless environ configures NATS (then
// they run as their own services).
func options(environ []string) []fx.Option {
	opts := []fx.Option{service.Module, service.SagaModule}
	if broker.Enabled(environ) {
		return append(opts, broker.Options(environ)...)
	}
	return append(opts, notifier.Module, payment.Module)
}
