package natsjs_test

import (
	"testing"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/natsjs"
	martytest "github.com/martyfx/martyfx/fxtest"
)

// natsjs runs the transport contract on a private embedded server per
// case, which the outage case shuts down and starts again on the same port
// and store.
func TestTransportContract(t *testing.T) {
	t.Parallel()
	martytest.TransportContract(t, func(t *testing.T) martytest.TransportTarget {
		dir, port := t.TempDir(), freePort(t)
		srv := startServer(t, dir, port)
		tg := newTarget(t, srv.ClientURL())
		return martytest.TransportTarget{
			Options: []fx.Option{natsjs.Module, martytest.Env(tg.env("MARTY_LOG_LEVEL=info")...)},
			Shared:  true,
			Ordered: true,
			Outage: func(t *testing.T) func() {
				srv.Shutdown()
				srv.WaitForShutdown()
				return func() { srv = startServer(t, dir, port) }
			},
		}
	})
}
