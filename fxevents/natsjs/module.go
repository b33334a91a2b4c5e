package natsjs

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxmonitor"
)

// Module provides the nats Config (section "nats"), the *Conn (connected in
// OnStart, closed in OnStop) as the fxevents.Transport, runs one durable
// consumer per fxevents handler, and adds the readiness check "nats" on the
// connection: non-critical with the outbox bus (the outbox absorbs an
// outage), critical with the memory bus (publishing goes to NATS directly).
// It needs fxevents.Module (and fxcore.Module) in the app.
var Module = fx.Module("martyfx.natsjs",
	fx.Provide(
		fxcore.ProvideConfig[Config]("nats", DefaultConfig),
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
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Stopping   *fxcore.Stopping `optional:"true"`
}

func newConn(in connIn) (*Conn, error) {
	name := in.Info.Name
	if in.Info.InstanceID != "" {
		name += "/" + in.Info.InstanceID
	}
	c, err := NewConn(in.Config, name, in.Log, in.Registerer)
	if err != nil {
		return nil, err
	}
	if in.Stopping != nil {
		in.Stopping.OnBegin(c.BeginStop)
	}
	in.LC.Append(fx.Hook{OnStart: c.Start, OnStop: c.Close})
	return c, nil
}

type consumersIn struct {
	fx.In
	LC           fx.Lifecycle
	Conn         *Conn
	Dispatcher   *fxevents.Dispatcher
	Bus          fxevents.Bus // started before, stopped after the consumers
	EventsConfig fxevents.Config
	Info         fxcore.ServiceInfo
	Log          *zap.Logger
	Stopping     *fxcore.Stopping `optional:"true"`
}

func startConsumers(in consumersIn) error {
	maxDeliveries := in.Conn.cfg.MaxDeliveries
	if maxDeliveries == 0 {
		maxDeliveries = in.EventsConfig.MaxAttempts
	}
	if maxDeliveries > in.EventsConfig.MaxAttempts {
		return fmt.Errorf("natsjs: MARTY_NATS_MAX_DELIVERIES=%d is more than MARTY_EVENTS_MAX_ATTEMPTS=%d, where the dispatcher dead-letters: raise MARTY_EVENTS_MAX_ATTEMPTS too, or leave MARTY_NATS_MAX_DELIVERIES at 0",
			maxDeliveries, in.EventsConfig.MaxAttempts)
	}
	cs, err := NewConsumers(in.Conn, in.Dispatcher, ConsumerOptions{
		Service: in.Info.Name, Workers: in.EventsConfig.Workers, MaxDeliveries: maxDeliveries, Log: in.Log,
	})
	if err != nil {
		return err
	}
	in.LC.Append(fx.Hook{
		OnStart: cs.Start,
		OnStop: func(ctx context.Context) error {
			if in.Stopping != nil {
				in.Stopping.Begin()
			}
			return cs.Stop(ctx)
		},
	})
	return nil
}

// newHealthCheck is the readiness check "nats". It is critical only when
// publishing goes to NATS directly (the memory bus): then a NATS outage
// fails every write that publishes, and the pod should not get traffic.
// With the outbox bus (MARTY_EVENTS_BUS=outbox) events are stored with the
// writes and relayed after the reconnection: the pod absorbs the outage, so
// the check only degrades readiness (200 "degraded", the check failing in
// /readyz?verbose and the MartyHealthCheckDegraded alert).
// MARTY_MONITOR_CHECKS_NATS_CRITICAL overrides the choice.
func newHealthCheck(c *Conn, ev fxevents.Config) fxmonitor.Check {
	return fxmonitor.Check{
		Name: "nats", Kinds: fxmonitor.Readiness, Critical: ev.Bus != fxevents.BusOutbox,
		Interval: time.Second, Timeout: 2 * time.Second, FailureThreshold: 1,
		Func: c.health,
	}
}
