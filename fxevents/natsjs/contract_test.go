package natsjs_test

import (
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	martytest "github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/nettest"
)

// natsjs runs the transport contract on a private embedded server per
// case, which the outage case shuts down and starts again on the same port
// and store. The server is shut down at cleanup after the apps stopped
// (its cleanup is registered before theirs), whichever instance runs then.
func TestTransportContract(t *testing.T) {
	t.Parallel()
	martytest.TransportContract(t, func(t *testing.T) martytest.TransportTarget {
		dir, port := t.TempDir(), nettest.FreePort(t)
		var mu sync.Mutex
		run := func() *server.Server {
			s, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: dir, Port: port})
			require.NoError(t, err)
			return s
		}
		srv := run()
		t.Cleanup(func() {
			mu.Lock()
			defer mu.Unlock()
			srv.Shutdown()
			srv.WaitForShutdown()
		})
		tg := newTarget(t, srv.ClientURL())
		return martytest.TransportTarget{
			Options: []fx.Option{natsjs.Module, martytest.Env(tg.env("MARTY_LOG_LEVEL=info")...)},
			Shared:  true,
			Ordered: true,
			Outage: func(*testing.T) func() {
				mu.Lock()
				srv.Shutdown()
				srv.WaitForShutdown()
				mu.Unlock()
				return func() {
					mu.Lock()
					defer mu.Unlock()
					srv = run()
				}
			},
		}
	})
}
