// Command payment is the martyfx example's payment service, the order
// saga's other side: it consumes ReservePayment and ReleasePayment, asks a
// fake provider (customers "declined-..." are declined, "slow-..." never get
// an answer, anyone else is reserved), answers with PaymentReserved or
// PaymentDeclined through the outbox, and serves its rows at GET
// /v1/payments. Commands come over NATS JetStream (MARTY_NATS_URL, or
// MARTY_NATS_EMBEDDED=true); without NATS the orders binary runs the same
// handlers in its own process. See example/README.md. Build with -tags
// nonatsdev (as the Dockerfile does) to leave the embedded NATS server out.
package main

import (
	"fmt"
	"os"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/example/internal/broker"
	"github.com/martyfx/martyfx/example/internal/devnats"
	"github.com/martyfx/martyfx/example/payment/service"

	// SQLite: the embedded default database (MARTY_DB_DRIVER=sqlite).
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

func main() {
	if err := devnats.Check(broker.Embedded(os.Environ())); err != nil {
		fmt.Fprintln(os.Stderr, "payment:", err)
		os.Exit(2)
	}
	if !broker.Enabled(os.Environ()) {
		fmt.Fprintln(os.Stderr, "payment: MARTY_NATS_URL is not set (nor MARTY_NATS_EMBEDDED=true): "+
			"this process will receive no payment commands. Without NATS, `go run ./example/orders` runs the payment handlers itself.")
	}
	opts := append([]fx.Option{service.Module}, broker.Options(os.Environ())...)
	opts = append(opts, devnats.Options()...)
	martyfx.Run(opts...)
}
