package fxcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
)

// ErrNotFound is what a remembered not-found returns (errors.Is also
// matches fxrepo.ErrNotFound); the first load returns the loader's error.
var ErrNotFound error = notFoundSentinel{}

type notFoundSentinel struct{}

func (notFoundSentinel) Error() string                 { return "fxcache: not found" }
func (notFoundSentinel) ErrorClass() fxcore.ErrorClass { return fxcore.ClassNotFound }
func (notFoundSentinel) PublicMessage() string         { return "not found" }
func (notFoundSentinel) Is(target error) bool          { return target == fxrepo.ErrNotFound }

// TypedOptions configure a typed view of the cache.
type TypedOptions struct {
	// TTL overrides Config.TTL for this view (0: the config's).
	TTL time.Duration
	// IsNotFound says which loader errors are a "not found" to remember for
	// Config.NegativeTTL (default: errors.Is fxrepo.ErrNotFound or
	// ErrNotFound).
	IsNotFound func(error) bool
}

// Typed is a typed view of the cache under a name ("orders"): values of V,
// encoded as JSON in Redis. The in-process tier hands out the value it
// holds: do not mutate what Get or GetOrLoad return when V is (or holds) a
// pointer, slice or map.
type Typed[V any] struct {
	c          *Cache
	name       string
	ttl        time.Duration
	isNotFound func(error) bool

	hitLocal, hitRedis, negLocal, negRedis, miss prometheus.Counter
	loadOK, loadNotFound, loadErr, loadErrors    prometheus.Counter
	loadSeconds                                  prometheus.Observer
}

// Of returns the typed view of c named name. Its keys are
// "<prefix>:<name>:<key>"; its metrics carry cache="<name>".
func Of[V any](c *Cache, name string, opts TypedOptions) *Typed[V] {
	t := &Typed[V]{c: c, name: name, ttl: opts.TTL, isNotFound: opts.IsNotFound}
	if t.ttl <= 0 {
		t.ttl = c.cfg.TTL
	}
	if t.isNotFound == nil {
		t.isNotFound = func(err error) bool { return errors.Is(err, fxrepo.ErrNotFound) || errors.Is(err, ErrNotFound) }
	}
	m := c.m
	t.hitLocal, t.hitRedis = m.hits.WithLabelValues(name, tierLocal), m.hits.WithLabelValues(name, tierRedis)
	t.negLocal, t.negRedis = m.negativeHits.WithLabelValues(name, tierLocal), m.negativeHits.WithLabelValues(name, tierRedis)
	t.miss = m.misses.WithLabelValues(name)
	t.loadOK, t.loadNotFound, t.loadErr = m.loads.WithLabelValues(name, "ok"), m.loads.WithLabelValues(name, "not_found"), m.loads.WithLabelValues(name, "error")
	t.loadErrors = m.loadErrors.WithLabelValues(name)
	t.loadSeconds = m.loadSeconds.WithLabelValues(name)
	return t
}

// Name is the view's name.
func (t *Typed[V]) Name() string { return t.name }

// The Redis encoding: a tag byte, then the JSON value.
const (
	tagValue    = 'v'
	tagNotFound = 'n'
)

// Get returns the value under key from the in-process tier, then Redis; ok
// is false on a miss, a remembered not-found, or Redis unavailable.
func (t *Typed[V]) Get(ctx context.Context, key string) (v V, ok bool) {
	full := t.c.fullKey(t.name, key)
	if lv, neg, found := t.c.getLocal(full); found {
		if neg {
			t.negLocal.Inc()
			return v, false
		}
		t.hitLocal.Inc()
		return lv.(V), true
	}
	gen := t.c.gen(full).Load()
	v, neg, found := t.fromRedis(ctx, full, gen)
	if found && !neg {
		return v, true
	}
	if !found {
		t.miss.Inc()
	}
	return v, false
}

// Set stores v under key in every tier with the view's TTL (jittered).
// A Redis failure is counted, not returned: v is then in process only.
func (t *Typed[V]) Set(ctx context.Context, key string, v V) {
	full := t.c.fullKey(t.name, key)
	t.c.gen(full).Add(1) // loads in flight must not overwrite v
	ttl := t.c.jitter(t.ttl)
	t.c.putLocal(full, v, ttl, t.c.gen(full).Load())
	if t.c.rdb == nil || t.c.isClosed() {
		return
	}
	if b, err := encode(v); err == nil {
		t.c.redisSet(ctx, full, b, ttl)
	} else {
		t.c.log.Warn("cache: value not encodable as JSON; kept in process only", zap.String("cache", t.name), zap.Error(err))
	}
}

// Delete forgets key in every tier and on the other replicas (an
// Invalidated event on the bus). Inside a unit of work (fxrepo.UnitOfWork)
// it happens once the outermost transaction commits, never on rollback.
func (t *Typed[V]) Delete(ctx context.Context, key string) {
	t.c.invalidate(ctx, t.c.fullKey(t.name, key))
}

// GetOrLoad returns the value under key, calling load on a miss: one load
// per key at a time in this process (concurrent callers wait for it and
// share its result). A loaded value is stored with the view's TTL
// (jittered); a not-found (TypedOptions.IsNotFound) is remembered for
// Config.NegativeTTL and returned again as ErrNotFound; any other error is
// returned and not stored. Redis failures are never returned: the value is
// loaded instead. load runs with ctx's values and deadline but not its
// cancellation (other callers may wait for it); a caller whose ctx ends
// stops waiting.
func (t *Typed[V]) GetOrLoad(ctx context.Context, key string, load func(ctx context.Context) (V, error)) (V, error) {
	full := t.c.fullKey(t.name, key)
	if lv, neg, found := t.c.getLocal(full); found {
		if neg {
			t.negLocal.Inc()
			var zero V
			return zero, t.notFound(key)
		}
		t.hitLocal.Inc()
		return lv.(V), nil
	}
	ch := t.c.sf.DoChan(full, func() (any, error) { return t.fill(ctx, full, key, load) })
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		return r.Val.(V), nil
	case <-ctx.Done():
		var zero V
		return zero, fmt.Errorf("fxcache: %s %q: %w", t.name, key, ctx.Err())
	}
}

func (t *Typed[V]) notFound(key string) error { return &notFoundError{cache: t.name, key: key} }

// notFoundError is a remembered not-found: errors.Is ErrNotFound and
// fxrepo.ErrNotFound; classified not found.
type notFoundError struct{ cache, key string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("fxcache: %s %q not found (remembered)", e.cache, e.key)
}
func (e *notFoundError) ErrorClass() fxcore.ErrorClass { return fxcore.ClassNotFound }
func (e *notFoundError) PublicMessage() string         { return "not found" }
func (e *notFoundError) Is(target error) bool {
	return target == ErrNotFound || target == fxrepo.ErrNotFound
}

// fromRedis reads full from Redis and keeps what it found in process.
func (t *Typed[V]) fromRedis(ctx context.Context, full string, gen uint64) (v V, negative, found bool) {
	b, ok := t.c.redisGet(ctx, full)
	if !ok {
		return v, false, false
	}
	switch b[0] {
	case tagNotFound:
		t.negRedis.Inc()
		t.c.putNegative(full, gen)
		return v, true, true
	case tagValue:
		if err := json.Unmarshal(b[1:], &v); err == nil {
			t.hitRedis.Inc()
			t.c.putLocal(full, v, t.c.jitter(t.ttl), gen)
			return v, false, true
		}
	}
	// Not ours, or written by another version of V: a miss.
	var zero V
	return zero, false, false
}

// fill runs once per key at a time: Redis, then the loader.
func (t *Typed[V]) fill(ctx context.Context, full, key string, load func(ctx context.Context) (V, error)) (any, error) {
	gen := t.c.gen(full).Load()
	if v, neg, found := t.fromRedis(ctx, full, gen); found {
		if neg {
			return nil, t.notFound(key)
		}
		return v, nil
	}
	t.miss.Inc()
	lctx := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		lctx, cancel = context.WithDeadline(lctx, dl)
		defer cancel()
	}
	start := time.Now()
	v, err := safeLoad(lctx, load)
	t.loadSeconds.Observe(time.Since(start).Seconds())
	switch {
	case err == nil:
		t.loadOK.Inc()
		ttl := t.c.jitter(t.ttl)
		t.c.putLocal(full, v, ttl, gen)
		if t.c.rdb != nil {
			if b, eerr := encode(v); eerr == nil {
				t.c.redisSetAsync(ctx, full, b, ttl, gen)
			}
		}
		return v, nil
	case t.isNotFound(err):
		t.loadNotFound.Inc()
		if t.c.neg != nil {
			t.c.putNegative(full, gen)
			if t.c.rdb != nil {
				t.c.redisSetAsync(ctx, full, []byte{tagNotFound}, t.c.cfg.NegativeTTL, gen)
			}
		}
		return nil, err
	default:
		t.loadErr.Inc()
		t.loadErrors.Inc()
		return nil, err
	}
}

func safeLoad[V any](ctx context.Context, load func(ctx context.Context) (V, error)) (v V, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("fxcache: loader panicked: %v", r)
		}
	}()
	return load(ctx)
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{tagValue}, b...), nil
}
