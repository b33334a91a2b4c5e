// Command notifier is the martyfx example's consumer: it records a
// notification for every order event and serves them at GET
// /v1/notifications. Events come over NATS JetStream (MARTY_NATS_URL, or
// MARTY_NATS_EMBEDDED=true); without NATS the orders binary runs the same
// handler in its own process. See example/README.md. Build with -tags
// nonatsdev (as the Dockerfile does) to leave the embedded NATS server out.
package main

import (
	"fmt"
	"os"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/example/internal/broker"
	"github.com/martyfx/martyfx/example/internal/devnats"
	"github.com/martyfx/martyfx/example/notifier/service"

	// SQLite: the embedded default database (MARTY_DB_DRIVER=sqlite).
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

func main() {
	if err := devnats.Check(broker.Embedded(os.Environ())); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(2)
	}
	if !broker.Enabled(os.Environ()) {
		fmt.Fprintln(os.Stderr, "notifier: MARTY_NATS_URL is not set (nor MARTY_NATS_EMBEDDED=true): "+
			"this process will receive no order events. Without NATS, `go run ./example/orders` records the notifications itself.")
	}
	opts := append([]fx.Option{service.Module}, broker.Options(os.Environ())...)
	opts = append(opts, devnats.Options()...)
	martyfx.Run(opts...)
}
