package kafka

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxmonitor"
)

// Module provides the kafka Config (section "kafka"), the *Conn (the
// idempotent producer, connected in OnStart and closed in OnStop) as the
// fxevents.Transport, runs one consumer group member per fxevents handler,
// and adds the readiness check "kafka": non-critical with the outbox bus
// (the outbox absorbs an outage), critical with the memory bus. It needs
// fxevents.Module (and fxcore.Module) in the app.
var Module = fx.Module("martyfx.kafka",
	fx.Provide(
		fxcore.ProvideConfig[Config]("kafka", DefaultConfig),
		newConn,
		func(c *Conn) fxevents.Transport { return c },
	),
	fx.Invoke(startConsumers),
	fxmonitor.AsCheck(newHealthCheck),
)

type connIn struct {
	fx.In
	LC         fx.Lifecycle
	Config     Config
	Info       fxcore.ServiceInfo
	Logger     *zap.Logger
	Registerer prometheus.Registerer
}

func newConn(in connIn) (*Conn, error) {
	c, err := NewConn(in.Config, ConnOptions{Logger: in.Logger, Info: in.Info, Registerer: in.Registerer})
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
	if len(in.Dispatcher.Handlers()) == 0 {
		return nil // nothing to consume: no group, no connection
	}
	cs, err := NewConsumers(ConsumersOptions{
		Conn: in.Conn, Dispatcher: in.Dispatcher, Info: in.Info, Logger: in.Logger, Stopping: in.Stopping,
	})
	if err != nil {
		return err
	}
	in.LC.Append(fx.Hook{OnStart: cs.Start, OnStop: cs.Stop})
	return nil
}

// newHealthCheck is the readiness check "kafka". It is critical only when
// publishing goes to Kafka directly (the memory bus); with the outbox bus
// (MARTY_EVENTS_BUS=outbox) events wait in the outbox during an outage, so
// the check only degrades readiness (200 "degraded", the check failing in
// /readyz?verbose and the MartyHealthCheckDegraded alert).
// MARTY_MONITOR_CHECKS_KAFKA_CRITICAL overrides the choice.
func newHealthCheck(c *Conn, ev fxevents.Config) fxmonitor.Check {
	return fxmonitor.Check{
		Name: "kafka", Kinds: fxmonitor.Readiness, Critical: ev.Bus != fxevents.BusOutbox,
		Interval: 2 * time.Second, Timeout: 2 * time.Second, FailureThreshold: 1,
		Func: c.health,
	}
}
