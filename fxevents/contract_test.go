package fxevents_test

import (
	"testing"

	"go.uber.org/fx"

	martytest "github.com/martyfx/martyfx/fxtest"
)

// The memory bus runs the transport contract: it keeps one aggregate's
// events in order and each app is its own bus (no broker to share, cut or
// restart around).
func TestTransportContract(t *testing.T) {
	t.Parallel()
	martytest.TransportContract(t, func(*testing.T) martytest.TransportTarget {
		return martytest.TransportTarget{
			Options: []fx.Option{martytest.Env("MARTY_EVENTS_BUS=memory", "MARTY_EVENTS_WORKERS=4")},
			Ordered: true,
		}
	})
}
