package rabbitmq

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxmonitor"
)

// Module provides the rabbitmq Config (section "rabbitmq"), the *Conn
// (connected in OnStart, closed in OnStop) as the fxevents.Transport, runs
// the consumers of every fxevents handler, and adds the readiness check
// "rabbitmq": non-critical with the outbox bus (the outbox absorbs an
// outage), critical with the memory bus. It needs fxevents.Module (and
// fxcore.Module) in the app.
var Module = fx.Module("martyfx.rabbitmq",
	fx.Provide(
		fxcore.ProvideConfig[Config]("rabbitmq", DefaultConfig),
		newConn,
		func(c *Conn) fxevents.Transport { return c },
	),
	fx.Invoke(startConsumers),
	fxmonitor.AsCheck(newHealthCheck),
)

type connIn struct {
	fx.In
	LC         fx.Lifecycle
	Shutdowner fx.Shutdowner
	Config     Config
	Info       fxcore.ServiceInfo
	Logger     *zap.Logger
	Registerer prometheus.Registerer
	Stopping   *fxcore.Stopping `optional:"true"`
}

func newConn(in connIn) (*Conn, error) {
	c, err := NewConn(in.Config, ConnOptions{
		Logger: in.Logger, Info: in.Info, Registerer: in.Registerer, Stopping: in.Stopping,
		Fatal: fxcore.FatalFunc(in.Shutdowner, in.Logger, "rabbitmq connection"),
	})
	if err != nil {
		return nil, err
	}
	in.LC.Append(fx.Hook{OnStart: c.Start, OnStop: c.Close})
	return c, nil
}

type consumersIn struct {
	fx.In
	LC         fx.Lifecycle
	Conn       *Conn
	Dispatcher *fxevents.Dispatcher
	Bus        fxevents.Bus // started before, stopped after the consumers
	Info       fxcore.ServiceInfo
	Logger     *zap.Logger
	Stopping   *fxcore.Stopping `optional:"true"`
}

func startConsumers(in consumersIn) error {
	cs, err := NewConsumers(ConsumersOptions{
		Conn: in.Conn, Dispatcher: in.Dispatcher, Info: in.Info, Logger: in.Logger, Stopping: in.Stopping,
	})
	if err != nil {
		return err
	}
	in.LC.Append(fx.Hook{OnStart: cs.Start, OnStop: cs.Stop})
	return nil
}

// newHealthCheck is the readiness check "rabbitmq". It is critical only
// when publishing goes to RabbitMQ directly (the memory bus). With the
// outbox bus (MARTY_EVENTS_BUS=outbox) events wait in the outbox during an
// outage: the check only degrades readiness.
// MARTY_MONITOR_CHECKS_RABBITMQ_CRITICAL overrides the choice.
func newHealthCheck(c *Conn, ev fxevents.Config) fxmonitor.Check {
	return fxmonitor.Check{
		Name: "rabbitmq", Kinds: fxmonitor.Readiness, Critical: ev.Bus != fxevents.BusOutbox,
		Interval: time.Second, Timeout: 2 * time.Second, FailureThreshold: 1,
		Func: c.health,
	}
}
