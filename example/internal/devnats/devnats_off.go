//go:build nonatsdev

package devnats

import (
	"errors"

	"go.uber.org/fx"
)

// Linked reports whether this build carries the embedded server.
const Linked = false

// Options are added next to natsjs.Module: nothing in this build
// (-tags nonatsdev), which links no nats-server.
func Options() []fx.Option { return nil }

// Check explains, when embedded (MARTY_NATS_EMBEDDED=true) is asked of
// this build, that it has no embedded server.
func Check(embedded bool) error {
	if embedded {
		return errors.New("MARTY_NATS_EMBEDDED=true, but this binary was built with -tags nonatsdev and has no embedded NATS server: " +
			"set MARTY_NATS_URL to a running NATS, or build without -tags nonatsdev")
	}
	return nil
}
