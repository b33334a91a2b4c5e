package fxcache

import (
	"net/url"
	"strings"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Config is the "cache" section (MARTY_CACHE_<FIELD>).
type Config struct {
	// URL is the Redis server (redis://host:port/db or rediss:// for TLS).
	// Empty: the cache is in-process only (no Redis, no connection).
	URL string `koanf:"url"`
	// Username and Password authenticate to Redis (ACL user); they
	// override the URL's. Never logged.
	Username string `koanf:"username"`
	Password string `koanf:"password"`
	// TLS is the Redis client's TLS (MARTY_CACHE_TLS_ENABLED, _CA_FILE,
	// _CERT_FILE, _KEY_FILE, _SERVER_NAME, _INSECURE_SKIP_VERIFY); any of
	// them, or a rediss:// URL, turns TLS on.
	TLS fxcore.TLS `koanf:"tls"`

	// KeyPrefix starts every Redis key ("<prefix>:<cache>:<key>"); empty
	// means the service name (OTEL_SERVICE_NAME / MARTY_SERVICE_NAME).
	KeyPrefix string `koanf:"key_prefix"`
	// TTL is how long an entry lives (Redis and in-process only).
	TTL time.Duration `koanf:"ttl"`
	// Jitter spreads expiries: each TTL is multiplied by a random factor
	// in [1-jitter, 1+jitter] so keys cached together do not expire
	// together (0 to 0.5).
	Jitter float64 `koanf:"jitter"`
	// NegativeTTL is how long a "not found" is remembered (0 disables
	// negative caching).
	NegativeTTL time.Duration `koanf:"negative_ttl"`
	// NegativeSize bounds the in-process negative cache (entries), apart
	// from the values so that a flood of unknown keys evicts no value.
	NegativeSize int `koanf:"negative_size"`
	// LocalSize bounds the in-process tier (entries; W-TinyLFU eviction).
	// 0 turns the in-process tier off in front of Redis (every read goes
	// to Redis; replicas never hold a copy of their own); it needs a URL.
	LocalSize int `koanf:"local_size"`
	// LocalTTL caps how long the in-process tier keeps an entry when Redis
	// is behind it: it bounds staleness on a replica that missed an
	// invalidation event.
	LocalTTL time.Duration `koanf:"local_ttl"`
	// Timeout bounds every Redis call (dial, read, write, pool wait): past
	// it a read falls through to the loader.
	Timeout time.Duration `koanf:"timeout"`
	// PoolSize is the Redis connection pool's size (0: go-redis' default,
	// 10 per CPU).
	PoolSize int `koanf:"pool_size"`
}

// DefaultConfig returns the defaults: in-process only, TTL 5m with 10%
// jitter, not-found remembered 30s (10 000 entries), 100 000 in-process
// entries kept at most 1m in front of Redis, 100ms Redis timeout.
func DefaultConfig() Config {
	return Config{
		TTL:          5 * time.Minute,
		Jitter:       0.1,
		NegativeTTL:  30 * time.Second,
		NegativeSize: 10_000,
		LocalSize:    100_000,
		LocalTTL:     time.Minute,
		Timeout:      100 * time.Millisecond,
	}
}

// Validate checks the values; its errors name the MARTY_CACHE_* variable.
func (c Config) Validate() error {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || u.Host == "" || (u.Scheme != "redis" && u.Scheme != "rediss") {
			return fxcore.Invalid("url", redactURL(c.URL), "a redis://host:port/db or rediss:// URL, or empty for the in-process cache only")
		}
	}
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n") {
		return fxcore.Invalid("key_prefix", c.KeyPrefix, "a prefix without whitespace")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"ttl", c.TTL}, {"local_ttl", c.LocalTTL}, {"timeout", c.Timeout}} {
		if d.v <= 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a positive duration")
		}
	}
	if c.NegativeTTL < 0 {
		return fxcore.Invalid("negative_ttl", c.NegativeTTL.String(), "a duration >= 0 (0 disables negative caching)")
	}
	if c.Jitter < 0 || c.Jitter > 0.5 {
		return fxcore.Invalid("jitter", c.Jitter, "a ratio in [0, 0.5]")
	}
	if c.LocalSize < 0 || (c.LocalSize == 0 && c.URL == "") {
		return fxcore.Invalid("local_size", c.LocalSize, "a positive number of entries (0, no in-process tier, needs MARTY_CACHE_URL)")
	}
	if c.NegativeSize < 1 {
		return fxcore.Invalid("negative_size", c.NegativeSize, "a positive number of entries")
	}
	if c.PoolSize < 0 {
		return fxcore.Invalid("pool_size", c.PoolSize, "0 (the default) or a positive integer")
	}
	return c.TLS.Validate("tls")
}

// redactURL hides the URL's password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	return u.String()
}
