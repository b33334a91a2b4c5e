// Package broker decides, from the environment, whether the example services
// use NATS JetStream for their events.
package broker

import (
	"strconv"
	"strings"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/natsjs"
)

// Options returns natsjs.Module when environ (os.Environ() form) sets
// MARTY_NATS_URL or MARTY_NATS_EMBEDDED=true, and nothing otherwise (events
// then stay in the process: the memory bus, or the outbox relayed to the
// local handlers).
func Options(environ []string) []fx.Option {
	if Enabled(environ) {
		return []fx.Option{natsjs.Module}
	}
	return nil
}

// Enabled reports whether environ configures NATS.
func Enabled(environ []string) bool {
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "MARTY_NATS_URL":
			if strings.TrimSpace(v) != "" {
				return true
			}
		case "MARTY_NATS_EMBEDDED":
			if b, err := strconv.ParseBool(v); err == nil && b {
				return true
			}
		}
	}
	return false
}
