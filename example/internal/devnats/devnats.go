//go:build !nonatsdev

// Package devnats links the embedded NATS server (natsdev.Module) into the
// example's binaries, so that MARTY_NATS_EMBEDDED=true works in a plain
// `go run ./example/orders` or `go build`. Only the example's main packages
// import it.
//
// Build with -tags nonatsdev to leave it out, as the Dockerfiles do: the
// binary then contains no nats-server code and needs a running NATS
// (MARTY_NATS_URL); MARTY_NATS_EMBEDDED=true fails at start and says so.
package devnats

import (
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
)

// Linked reports whether this build carries the embedded server.
const Linked = true

// Options are added next to natsjs.Module: natsdev.Module in this build.
func Options() []fx.Option { return []fx.Option{natsdev.Module} }

// Check returns nil: this build runs MARTY_NATS_EMBEDDED=true.
func Check(embedded bool) error { return nil }
