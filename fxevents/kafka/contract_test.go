package kafka_test

import (
	"testing"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/kafka"
	martytest "github.com/martyfx/martyfx/fxtest"
)

// kafka runs the transport contract on a kfake cluster per case; the
// outage case cuts every connection to it (kfake.Control) and restores it.
func TestTransportContract(t *testing.T) {
	t.Parallel()
	martytest.TransportContract(t, func(t *testing.T) martytest.TransportTarget {
		c := newCluster(t)
		return martytest.TransportTarget{
			Options: []fx.Option{kafka.Module, martytest.Env(c.env("t" + randHex(4))...)},
			Shared:  true,
			Ordered: true,
			Outage:  c.outage,
		}
	})
}
