package fxcache

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

// Module provides the cache Config (section "cache", MARTY_CACHE_*) and the
// *Cache: in-process only by default, in front of Redis when
// MARTY_CACHE_URL is set. It adds the non-critical readiness check "cache"
// (a Redis outage degrades readiness, never fails it), the dashboard panel
// "cache", and, with fxevents in the app, the handler that drops this
// replica's entries when another replica invalidates them. It needs
// fxcore.Module; fxmonitor.Module provides the circuit breaker.
var Module = fx.Module("martyfx.cache",
	fx.Provide(
		fxcore.ProvideConfig[Config]("cache", DefaultConfig),
		newCache,
	),
	fx.Invoke(connectBus),
	fxmonitor.AsCheck(newHealthCheck),
	fxmonitor.AsPanel(newPanel),
	fxevents.AsHandler(newInvalidationHandler),
)

type cacheIn struct {
	fx.In
	LC             fx.Lifecycle
	Config         Config
	Info           fxcore.ServiceInfo
	Logger         *zap.Logger
	Registerer     prometheus.Registerer `optional:"true"`
	TracerProvider trace.TracerProvider  `optional:"true"`
	Breakers       *breaker.Breakers     `optional:"true"`
}

func newCache(in cacheIn) (*Cache, error) {
	c, err := NewCache(in.Config, CacheOptions{
		Logger: in.Logger.Named("cache"), TracerProvider: in.TracerProvider, Registerer: in.Registerer,
		Breakers: in.Breakers, Service: in.Info.Name,
	})
	if err != nil {
		return nil, err
	}
	in.LC.Append(fx.Hook{OnStart: c.Start, OnStop: c.Close})
	return c, nil
}

type busIn struct {
	fx.In
	Cache *Cache
	Bus   fxevents.Bus `optional:"true"`
}

// connectBus gives the cache the bus (when the app has one) without making
// the cache depend on it: the bus' dispatcher depends on the cache's
// handler.
func connectBus(in busIn) { in.Cache.SetBus(in.Bus) }

func newInvalidationHandler(c *Cache, info fxcore.ServiceInfo) fxevents.Handler {
	return c.InvalidationHandler("fxcache.invalidate." + info.InstanceID)
}

// newHealthCheck is the readiness check "cache": non-critical, since every
// read falls through to its loader while Redis is down.
// MARTY_MONITOR_CHECKS_CACHE_CRITICAL overrides it.
func newHealthCheck(c *Cache) fxmonitor.Check {
	return fxmonitor.Check{
		Name: "cache", Kinds: fxmonitor.Readiness, Critical: false,
		Interval: 2 * time.Second, Timeout: 2 * time.Second, FailureThreshold: 1,
		Func: c.Health,
	}
}
