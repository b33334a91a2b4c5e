package fxauth

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// rateLimiter is a rate limit shared by the transports.
type rateLimiter interface {
	take(ctx context.Context, key string, now time.Time) verdict
	size() float64
}

// localLimiter adapts the in-process limiter.
type localLimiter struct{ *limiter }

func (l localLimiter) take(_ context.Context, key string, now time.Time) verdict {
	return l.limiter.take(key, now)
}

// redisLimiter is the limit across replicas: GCRA in Redis
// (github.com/go-redis/redis_rate), one key per caller. When Redis does
// not answer within RateRedisTimeout the in-process limiter decides
// instead (each replica then limits on its own): the outage is logged once,
// counted in marty_auth_ratelimit_fallbacks_total and shown by
// marty_auth_ratelimit_redis_down, and no call is refused for it.
type redisLimiter struct {
	client  *redis.Client
	rl      *redis_rate.Limiter
	limit   redis_rate.Limit
	prefix  string
	timeout time.Duration
	local   *limiter
	log     *zap.Logger
	metrics *metrics
	host    string
	down    atomic.Bool
}

func newRedisLimiter(cfg Config, log *zap.Logger) (*redisLimiter, error) {
	opts, err := redis.ParseURL(cfg.RateRedisURL)
	if err != nil {
		return nil, fmt.Errorf("fxauth: MARTY_AUTH_RATE_REDIS_URL: not a redis:// URL")
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = cfg.RateRedisTimeout, cfg.RateRedisTimeout, cfg.RateRedisTimeout
	opts.MaxRetries = -1 // a slow limiter is worse than a local one
	client := redis.NewClient(opts)
	lim := redis_rate.Limit{Rate: 1, Burst: cfg.burst(), Period: time.Duration(float64(time.Second) / cfg.RateLimit)}
	if r := cfg.RateLimit; r >= 1 && r == math.Trunc(r) {
		lim.Rate, lim.Period = int(r), time.Second
	}
	return &redisLimiter{
		client: client, rl: redis_rate.NewLimiter(client), limit: lim,
		prefix: cfg.RateRedisPrefix, timeout: cfg.RateRedisTimeout, local: newLimiter(cfg), log: log,
		host: opts.Addr,
	}, nil
}

func (r *redisLimiter) take(ctx context.Context, key string, now time.Time) verdict {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()
	res, err := r.rl.Allow(ctx, r.prefix+key, r.limit)
	if err != nil {
		r.metrics.fallbacks.Inc()
		if r.down.CompareAndSwap(false, true) {
			r.metrics.redisDown.Set(1)
			r.log.Warn("fxauth: the rate limiter's Redis does not answer; limiting in process until it does",
				zap.String("redis", r.host), zap.Error(err))
		}
		return r.local.take(key, now)
	}
	if r.down.CompareAndSwap(true, false) {
		r.metrics.redisDown.Set(0)
		r.log.Info("fxauth: the rate limiter's Redis answers again", zap.String("redis", r.host))
	}
	v := verdict{ok: res.Allowed > 0, limit: r.limit.Burst, remaining: res.Remaining, reset: max(0, res.ResetAfter)}
	if !v.ok {
		v.retryAfter = max(res.RetryAfter, time.Millisecond)
	}
	return v
}

func (r *redisLimiter) size() float64 { return r.local.size() }

func (r *redisLimiter) close() error { return r.client.Close() }

// redisHost is the host of a Redis URL, for messages (never its password).
func redisHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Host
}
