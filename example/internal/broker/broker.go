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
// local handlers). The embedded server itself is not here: the main
// packages add example/internal/devnats, so that this package (which tests
// import too) links no nats-server.
func Options(environ []string) []fx.Option {
	if Enabled(environ) {
		return []fx.Option{natsjs.Module}
	}
	return nil
}

// Enabled reports whether environ configures NATS.
func Enabled(environ []string) bool {
	return lookup(environ, "MARTY_NATS_URL") != "" || Embedded(environ)
}

// Embedded reports whether environ asks for the embedded NATS server
// (MARTY_NATS_EMBEDDED=true), which only builds with
// example/internal/devnats can run.
func Embedded(environ []string) bool {
	b, err := strconv.ParseBool(lookup(environ, "MARTY_NATS_EMBEDDED"))
	return err == nil && b
}

// lookup returns the trimmed value of the last key=value of environ.
func lookup(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if k, val, _ := strings.Cut(kv, "="); k == key {
			v = strings.TrimSpace(val)
		}
	}
	return v
}
