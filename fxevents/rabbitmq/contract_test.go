package rabbitmq_test

import (
	"testing"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/rabbitmq"
	martytest "github.com/martyfx/martyfx/fxtest"
)

// rabbitmq runs the transport contract on a vhost of its own per case,
// through a TCP proxy that the outage case cuts and restores.
func TestTransportContract(t *testing.T) {
	t.Parallel()
	martytest.TransportContract(t, func(t *testing.T) martytest.TransportTarget {
		tg := newTarget(t)
		px := newProxy(t, hostPort(t, tg))
		via := target{url: px.url(t, tg), vhost: tg.vhost}
		return martytest.TransportTarget{
			// Replicas look for a fair share of the partitions every 200 ms
			// (10 s by default), so the replica case sees the handover soon.
			Options: []fx.Option{rabbitmq.Module, martytest.Env(via.env("MARTY_RABBITMQ_REBALANCE_INTERVAL=200ms")...)},
			Shared:  true,
			Ordered: true,
			Outage: func(t *testing.T) func() {
				px.cut()
				return func() { px.restore(t) }
			},
		}
	})
}
