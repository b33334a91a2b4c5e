// Package fxcache is a read cache that never makes the service less
// available: an in-process W-TinyLFU tier (github.com/maypok86/otter/v2),
// in front of Redis (github.com/redis/go-redis/v9) when MARTY_CACHE_URL is
// set.
//
// The cache-aside API is typed: Of[V](cache, "orders", TypedOptions{})
// returns a view with Get, Set, Delete and GetOrLoad. GetOrLoad loads a
// missing key once per process at a time (singleflight), stores the value
// with the TTL (jittered) and remembers a not-found for a short, bounded
// while. Repository wraps an fxrepo.Store: Get reads through the cache,
// Create/Update/Delete invalidate the entity once the unit of work commits
// (never on rollback), and other replicas drop it on the Invalidated event
// published on the fxevents bus.
//
// Redis sits behind a short timeout and the fxmonitor circuit breaker
// "cache-redis": when it is down or slow, reads fall through to the loader
// and writes stay in process; no call fails because of Redis. The outage
// shows in the non-critical readiness check "cache" (readiness degraded,
// never failed), the marty_cache_redis_* metrics and the dashboard.
package fxcache
