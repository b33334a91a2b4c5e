package fxcache

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxrepo"
)

// BreakerName is the circuit breaker in front of Redis (settings:
// MARTY_MONITOR_BREAKERS_CACHE_REDIS_<FIELD>).
const BreakerName = "cache-redis"

// maxPendingDeletes bounds the Redis deletes remembered while Redis is
// unreachable, re-sent when it is back.
const maxPendingDeletes = 10_000

// maxAsync bounds the background work in flight (Redis writes after loads,
// invalidation events); past it a loaded value is only kept in process.
const maxAsync = 256

// publishTimeout bounds the publication of an Invalidated event.
const publishTimeout = 5 * time.Second

// CacheOptions are what NewCache takes besides the Config.
type CacheOptions struct {
	// Logger receives Redis outages and recoveries (default: none).
	Logger *zap.Logger
	// TracerProvider traces the Redis calls (go-redis' OTel
	// instrumentation; default: the global provider).
	TracerProvider trace.TracerProvider
	// Registerer receives the marty_cache_* metrics (default: none).
	Registerer prometheus.Registerer
	// Breakers provides the circuit breaker BreakerName in front of Redis
	// (default: a private one that opens after 5 consecutive failures and
	// half-opens after 30s).
	Breakers *breaker.Breakers
	// Bus carries invalidations to the other replicas (Invalidated
	// events); nil: none (SetBus may give it later).
	Bus fxevents.Bus
	// Service is the default KeyPrefix (the service name).
	Service string
}

// Cache is the cache: an in-process W-TinyLFU tier (otter), in front of
// Redis when Config.URL is set. Typed views (Of) read and write it. Redis
// is behind a short timeout and a circuit breaker: when it is down or
// slow every read falls through to its loader and every write is kept in
// process only; no call of the cache fails because of Redis.
type Cache struct {
	cfg    Config
	log    *zap.Logger
	prefix string
	reg    prometheus.Registerer
	m      *metrics

	local   *otter.Cache[string, localEntry]
	noLocal bool                           // LocalSize 0: Redis only
	neg     *otter.Cache[string, struct{}] // nil without negative caching

	rdb *redis.Client // nil: in-process only
	br  *breaker.Breaker

	sf   singleflight.Group
	seed maphash.Seed
	gens [256]atomic.Uint64 // write generations, by key hash

	bus    atomic.Pointer[busRef]
	origin string // this Cache's id in the Invalidated events it publishes

	sets   sync.WaitGroup
	setSem chan struct{}

	mu      sync.Mutex
	pending map[string]struct{} // Redis deletes that failed
	closed  bool
}

type busRef struct{ bus fxevents.Bus }

// localEntry is an in-process value and the time it lives.
type localEntry struct {
	v   any
	ttl time.Duration
}

// NewCache returns the cache. It opens no connection: Start checks Redis
// (and never fails); Close releases it.
func NewCache(cfg Config, opts CacheOptions) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxcache: config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	c := &Cache{cfg: cfg, log: opts.Logger, reg: opts.Registerer, seed: maphash.MakeSeed(),
		setSem: make(chan struct{}, maxAsync), pending: map[string]struct{}{}}
	var id [8]byte
	_, _ = crand.Read(id[:])
	c.origin = hex.EncodeToString(id[:])
	c.prefix = cfg.KeyPrefix
	if c.prefix == "" {
		c.prefix = opts.Service
	}
	if c.prefix == "" {
		c.prefix = "marty"
	}
	c.m = newMetrics(func() float64 { return float64(c.local.EstimatedSize()) })
	c.noLocal = cfg.LocalSize == 0
	c.local = otter.Must(&otter.Options[string, localEntry]{
		MaximumSize:      max(cfg.LocalSize, 1),
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, localEntry]) time.Duration { return e.Value.ttl }),
		OnDeletion: func(e otter.DeletionEvent[string, localEntry]) {
			c.countEviction(tierLocal, e.Cause)
		},
	})
	if cfg.NegativeTTL > 0 {
		c.neg = otter.Must(&otter.Options[string, struct{}]{
			MaximumSize:      cfg.NegativeSize,
			ExpiryCalculator: otter.ExpiryWriting[string, struct{}](cfg.NegativeTTL),
			OnDeletion: func(e otter.DeletionEvent[string, struct{}]) {
				c.countEviction("negative", e.Cause)
			},
		})
	}
	if opts.Bus != nil {
		c.SetBus(opts.Bus)
	}
	if cfg.URL != "" {
		if err := c.openRedis(opts); err != nil {
			c.stopLocal()
			return nil, err
		}
	}
	if err := c.m.register(opts.Registerer, c.rdb != nil); err != nil {
		c.stopLocal()
		if c.rdb != nil {
			_ = c.rdb.Close()
		}
		return nil, err
	}
	return c, nil
}

func (c *Cache) openRedis(opts CacheOptions) error {
	ro, err := redis.ParseURL(c.cfg.URL)
	if err != nil {
		return fmt.Errorf("fxcache: MARTY_CACHE_URL %s: not a Redis URL", redactURL(c.cfg.URL))
	}
	if c.cfg.Username != "" {
		ro.Username = c.cfg.Username
	}
	if c.cfg.Password != "" {
		ro.Password = c.cfg.Password
	}
	if c.cfg.TLS.ClientOn() {
		tc, err := c.cfg.TLS.ClientConfig()
		if err != nil {
			return fmt.Errorf("fxcache: MARTY_CACHE_TLS_*: %w", err)
		}
		if tc.ServerName == "" && ro.TLSConfig != nil {
			tc.ServerName = ro.TLSConfig.ServerName
		}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(ro.Addr)
		}
		ro.TLSConfig = tc
	}
	ro.DialTimeout = c.cfg.Timeout
	ro.ReadTimeout = c.cfg.Timeout
	ro.WriteTimeout = c.cfg.Timeout
	ro.PoolTimeout = c.cfg.Timeout
	ro.ContextTimeoutEnabled = true
	ro.MaxRetries = -1 // a failed call falls through to the loader at once
	if c.cfg.PoolSize > 0 {
		ro.PoolSize = c.cfg.PoolSize
	}
	ro.DisableIdentity = true
	c.rdb = redis.NewClient(ro)
	topts := []redisotel.TracingOption{redisotel.WithDBStatement(false)}
	if opts.TracerProvider != nil {
		topts = append(topts, redisotel.WithTracerProvider(opts.TracerProvider))
	}
	if err := redisotel.InstrumentTracing(c.rdb, topts...); err != nil {
		_ = c.rdb.Close()
		return fmt.Errorf("fxcache: instrument redis: %w", err)
	}
	bs := opts.Breakers
	if bs == nil {
		if bs, err = breaker.New(breaker.Config{}, breaker.Options{Logger: c.log}); err != nil {
			_ = c.rdb.Close()
			return fmt.Errorf("fxcache: %w", err)
		}
	}
	c.br = bs.Get(BreakerName)
	return nil
}

func (c *Cache) countEviction(tier string, cause otter.DeletionCause) {
	switch cause {
	case otter.CauseOverflow:
		c.m.evictions.WithLabelValues(tier, "size").Inc()
	case otter.CauseExpiration:
		c.m.evictions.WithLabelValues(tier, "expired").Inc()
	}
}

// SetBus sets the bus that carries invalidations to the other replicas.
func (c *Cache) SetBus(bus fxevents.Bus) {
	if bus != nil {
		c.bus.Store(&busRef{bus: bus})
	}
}

// Redis reports whether a Redis tier is configured.
func (c *Cache) Redis() bool { return c.rdb != nil }

// KeyPrefix is the prefix of every key ("<prefix>:<cache>:<key>").
func (c *Cache) KeyPrefix() string { return c.prefix }

// Start checks that Redis answers. It never fails: an unreachable Redis is
// logged and every read falls through to its loader until it is back.
func (c *Cache) Start(ctx context.Context) error {
	if c.rdb == nil {
		c.log.Info("cache: in-process only (MARTY_CACHE_URL is empty)")
		return nil
	}
	if err := c.ping(ctx); err != nil {
		c.log.Warn("cache: redis unreachable at start; reads fall through to the loaders until it is back",
			zap.String("addr", c.rdb.Options().Addr), zap.Error(err))
		return nil
	}
	c.log.Info("cache: redis connected", zap.String("addr", c.rdb.Options().Addr), zap.String("key_prefix", c.prefix))
	return nil
}

// Close waits (within ctx) for the Redis writes in flight and closes the
// connections. Calls after Close use the in-process tier only.
func (c *Cache) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.sets.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("fxcache: close: redis writes still in flight: %w", ctx.Err())
	}
	if c.rdb != nil {
		// Writes still in flight fail at once on the closed client.
		if cerr := c.rdb.Close(); cerr != nil && err == nil && !errors.Is(cerr, redis.ErrClosed) {
			err = fmt.Errorf("fxcache: close redis: %w", cerr)
		}
	}
	c.stopLocal()
	c.m.unregister(c.reg, c.rdb != nil)
	return err
}

func (c *Cache) stopLocal() {
	c.local.StopAllGoroutines()
	if c.neg != nil {
		c.neg.StopAllGoroutines()
	}
}

func (c *Cache) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// fullKey is the key in both tiers.
func (c *Cache) fullKey(name, key string) string { return c.prefix + ":" + name + ":" + key }

func (c *Cache) gen(full string) *atomic.Uint64 {
	return &c.gens[maphash.String(c.seed, full)%uint64(len(c.gens))]
}

// jitter spreads d by ±Config.Jitter.
func (c *Cache) jitter(d time.Duration) time.Duration {
	if c.cfg.Jitter == 0 || d <= 0 {
		return d
	}
	f := 1 + c.cfg.Jitter*(2*rand.Float64()-1) //nolint:gosec // jitter, not security
	return time.Duration(float64(d) * f)
}

// getLocal reads the in-process tier: a value, or a remembered not-found.
func (c *Cache) getLocal(full string) (v any, negative, ok bool) {
	if c.noLocal {
		return nil, false, false
	}
	if e, ok := c.local.GetIfPresent(full); ok {
		return e.v, false, true
	}
	if c.neg != nil {
		if _, ok := c.neg.GetIfPresent(full); ok {
			return nil, true, true
		}
	}
	return nil, false, false
}

// putLocal stores v in process for ttl (capped by LocalTTL in front of
// Redis), unless the key was written since gen was read.
func (c *Cache) putLocal(full string, v any, ttl time.Duration, gen uint64) {
	if c.rdb != nil {
		ttl = min(ttl, c.jitter(c.cfg.LocalTTL))
	}
	if c.noLocal || c.gen(full).Load() != gen {
		return
	}
	if c.neg != nil {
		c.neg.Invalidate(full)
	}
	c.local.Set(full, localEntry{v: v, ttl: ttl})
}

func (c *Cache) putNegative(full string, gen uint64) {
	if c.neg == nil || c.noLocal || c.gen(full).Load() != gen {
		return
	}
	c.local.Invalidate(full)
	c.neg.Set(full, struct{}{})
}

// dropLocal forgets full in process and makes loads in flight for it not
// store what they read.
func (c *Cache) dropLocal(full string) {
	c.gen(full).Add(1)
	c.local.Invalidate(full)
	if c.neg != nil {
		c.neg.Invalidate(full)
	}
}

// redisCall runs fn on Redis through the breaker, within the timeout,
// detached from the caller's cancellation (only Redis' failures count).
func (c *Cache) redisCall(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	start := time.Now()
	err := c.br.Execute(func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
		defer cancel()
		return fn(ctx)
	})
	c.m.redisSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.redisErrors.WithLabelValues(op).Inc()
	}
	return err
}

// redisGet reads full from Redis: found is false on a miss or a failure.
func (c *Cache) redisGet(ctx context.Context, full string) (b []byte, found bool) {
	if c.rdb == nil {
		return nil, false
	}
	err := c.redisCall(ctx, "get", func(ctx context.Context) error {
		var err error
		b, err = c.rdb.Get(ctx, full).Bytes()
		if errors.Is(err, redis.Nil) {
			b = nil
			return nil
		}
		return err
	})
	if err != nil || len(b) == 0 {
		return nil, false
	}
	return b, true
}

func (c *Cache) redisSet(ctx context.Context, full string, b []byte, ttl time.Duration) {
	_ = c.redisCall(ctx, "set", func(ctx context.Context) error {
		return c.rdb.Set(ctx, full, b, ttl).Err()
	})
}

// redisSetAsync writes full to Redis after a load without delaying the
// caller, unless the key was written since gen was read.
func (c *Cache) redisSetAsync(ctx context.Context, full string, b []byte, ttl time.Duration, gen uint64) {
	if c.rdb == nil {
		return
	}
	ctx = trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx))
	c.background(func() {
		if c.gen(full).Load() != gen {
			return
		}
		c.redisSet(ctx, full, b, ttl)
	})
}

// background runs fn on a goroutine Close waits for; past maxAsync in
// flight (or once closed) fn is dropped: what it does is best effort.
func (c *Cache) background(fn func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	select {
	case c.setSem <- struct{}{}:
	default:
		c.mu.Unlock()
		return
	}
	c.sets.Add(1)
	c.mu.Unlock()
	go func() {
		defer func() { <-c.setSem; c.sets.Done() }()
		fn()
	}()
}

// invalidate forgets the keys in every tier and tells the other replicas;
// inside a unit of work, only once it commits (never on rollback).
func (c *Cache) invalidate(ctx context.Context, fulls ...string) {
	if len(fulls) == 0 {
		return
	}
	detached := trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx))
	fxrepo.AfterCommit(ctx, func() { c.invalidateNow(detached, fulls) })
}

func (c *Cache) invalidateNow(ctx context.Context, fulls []string) {
	for _, k := range fulls {
		c.dropLocal(k)
	}
	if c.rdb != nil && !c.isClosed() {
		if err := c.redisCall(ctx, "del", func(ctx context.Context) error { return c.rdb.Del(ctx, fulls...).Err() }); err != nil {
			c.remember(fulls)
		}
	}
	if ref := c.bus.Load(); ref != nil {
		// In the background: a broker outage must not hold the request
		// (natsjs' Publish waits for the reconnection).
		c.background(func() {
			ctx, cancel := context.WithTimeout(ctx, publishTimeout)
			defer cancel()
			if err := ref.bus.Publish(ctx, Invalidated{Keys: fulls, Origin: c.origin}); err != nil {
				c.log.Warn("cache: publish the invalidation to the other replicas failed; they keep the entry until its local TTL",
					zap.Strings("keys", fulls), zap.Error(err))
			}
		})
	}
}

// remember keeps deletes that failed, re-sent when Redis is back.
func (c *Cache) remember(fulls []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range fulls {
		if len(c.pending) >= maxPendingDeletes {
			c.log.Warn("cache: too many deletes pending while redis is down; some entries may be stale until their TTL")
			return
		}
		c.pending[k] = struct{}{}
	}
}

// flushPending re-sends the deletes that failed while Redis was down.
func (c *Cache) flushPending(ctx context.Context) error {
	c.mu.Lock()
	keys := make([]string, 0, len(c.pending))
	for k := range c.pending {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	if len(keys) == 0 {
		return nil
	}
	if err := c.redisCall(ctx, "del", func(ctx context.Context) error { return c.rdb.Del(ctx, keys...).Err() }); err != nil {
		return err
	}
	c.mu.Lock()
	for _, k := range keys {
		delete(c.pending, k)
	}
	c.mu.Unlock()
	return nil
}

// PendingDeletes is how many Redis deletes wait for Redis to come back.
func (c *Cache) PendingDeletes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func (c *Cache) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(c.cfg.Timeout, time.Second))
	defer cancel()
	start := time.Now()
	err := c.rdb.Ping(ctx).Err()
	c.m.redisSeconds.WithLabelValues("ping").Observe(time.Since(start).Seconds())
	if err != nil {
		c.m.redisErrors.WithLabelValues("ping").Inc()
		c.m.redisUp.Set(0)
		return err
	}
	c.m.redisUp.Set(1)
	return nil
}

// errRedisDown is the health check's error: no address, no driver text.
var errRedisDown = errors.New("fxcache: redis unreachable; reads fall through to the loaders")

// Health checks Redis (nil without Redis): the "cache" readiness check,
// non-critical. It also re-sends the deletes that failed while Redis was
// down.
func (c *Cache) Health(ctx context.Context) error {
	if c.rdb == nil {
		return nil
	}
	if err := c.ping(ctx); err != nil {
		c.log.Warn("cache: redis unreachable", zap.String("addr", c.rdb.Options().Addr), zap.Error(err))
		return errRedisDown
	}
	if err := c.flushPending(ctx); err != nil {
		return errRedisDown
	}
	return nil
}
