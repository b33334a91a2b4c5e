package fxcache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus metrics (marty_cache_*).
type metrics struct {
	hits, negativeHits *prometheus.CounterVec // cache, tier
	misses             *prometheus.CounterVec // cache
	loads              *prometheus.CounterVec // cache, result
	loadErrors         *prometheus.CounterVec // cache
	loadSeconds        *prometheus.HistogramVec
	evictions          *prometheus.CounterVec // tier, cause
	redisSeconds       *prometheus.HistogramVec
	redisErrors        *prometheus.CounterVec // op
	redisUp            prometheus.Gauge
	localEntries       prometheus.GaugeFunc
}

// The tiers, values of the "tier" label.
const (
	tierLocal = "local"
	tierRedis = "redis"
)

func newMetrics(localSize func() float64) *metrics {
	return &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_hits_total",
			Help: "Cache reads answered with a value, by cache and tier (local, redis)."}, []string{"cache", "tier"}),
		negativeHits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_negative_hits_total",
			Help: "Cache reads answered with a remembered not-found, by cache and tier."}, []string{"cache", "tier"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_misses_total",
			Help: "Cache reads that no tier answered, by cache."}, []string{"cache"}),
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_loads_total",
			Help: "Loader calls after a miss (one per key at a time), by cache and result (ok, not_found, error)."}, []string{"cache", "result"}),
		loadErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_load_errors_total",
			Help: "Loader calls that failed (not cached), by cache."}, []string{"cache"}),
		loadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "marty_cache_load_duration_seconds",
			Help: "Loader latency, by cache.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"cache"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_evictions_total",
			Help: "In-process entries evicted, by tier (local, negative) and cause (size, expired)."}, []string{"tier", "cause"}),
		redisSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "marty_cache_redis_duration_seconds",
			Help: "Redis call latency, by operation (get, set, del, ping).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9)}, []string{"op"}),
		redisErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_cache_redis_errors_total",
			Help: "Redis calls that failed, timed out or were skipped by the open circuit breaker, by operation; each fell through."}, []string{"op"}),
		redisUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "marty_cache_redis_up",
			Help: "1 when the last Redis health check succeeded, 0 when it failed."}),
		localEntries: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "marty_cache_local_entries",
			Help: "Entries in the in-process tier (estimate)."}, localSize),
	}
}

func (m *metrics) collectors(withRedis bool) []prometheus.Collector {
	cs := []prometheus.Collector{m.hits, m.negativeHits, m.misses, m.loads, m.loadErrors, m.loadSeconds, m.evictions, m.localEntries}
	if withRedis {
		cs = append(cs, m.redisSeconds, m.redisErrors, m.redisUp)
	}
	return cs
}

func (m *metrics) register(reg prometheus.Registerer, withRedis bool) error {
	if reg == nil {
		return nil
	}
	for _, c := range m.collectors(withRedis) {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("fxcache: register the marty_cache_* metrics (is a second cache on this registry?): %w", err)
		}
	}
	return nil
}

func (m *metrics) unregister(reg prometheus.Registerer, withRedis bool) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors(withRedis) {
		reg.Unregister(c)
	}
}
