package fxauth

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is the in-process rate limiter: one token bucket
// (golang.org/x/time/rate) per caller key, at most max of them; when full,
// the idle ones (full buckets) are dropped first.
type limiter struct {
	limit rate.Limit
	burst int
	max   int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(cfg Config) *limiter {
	return &limiter{limit: rate.Limit(cfg.RateLimit), burst: cfg.burst(), max: cfg.RateMaxKeys, buckets: map[string]*rate.Limiter{}}
}

// verdict is a rate-limit decision, with what the RateLimit headers say.
type verdict struct {
	ok         bool
	limit      int           // the bucket size
	remaining  int           // tokens left after this request
	retryAfter time.Duration // when refused: until a token is there
	reset      time.Duration // until the bucket is full again
}

// take spends one token of key's bucket.
func (l *limiter) take(key string, now time.Time) verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= l.max {
			l.evict(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	v := verdict{limit: l.burst}
	if b.AllowN(now, 1) {
		v.ok = true
	} else {
		r := b.ReserveN(now, 1)
		v.retryAfter = r.DelayFrom(now)
		r.CancelAt(now)
	}
	tokens := b.TokensAt(now)
	v.remaining = max(0, int(tokens))
	v.reset = time.Duration((float64(l.burst) - tokens) / float64(l.limit) * float64(time.Second))
	return v
}

// evict drops the buckets that are full (idle callers); if that frees
// nothing, half of them.
func (l *limiter) evict(now time.Time) {
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) < l.max {
		return
	}
	n := len(l.buckets) / 2
	for k := range l.buckets {
		if n == 0 {
			break
		}
		delete(l.buckets, k)
		n--
	}
}

func (l *limiter) size() float64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return float64(len(l.buckets))
}

// forwardedIP returns the entry hops places from the right of the
// X-Forwarded-For values (each proxy appends the address it got the
// request from), the leftmost when there are fewer; "" when there is none.
func forwardedIP(values []string, hops int) string {
	var all []string
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				all = append(all, p)
			}
		}
	}
	if len(all) == 0 || hops < 1 {
		return ""
	}
	i := max(0, len(all)-hops)
	return all[i]
}

// hostOf is the host of a host:port address (the address itself without a
// port).
func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

// httpClientIP is the client's IP for a request, trusting proxies hops.
func httpClientIP(r *http.Request, proxies int) string {
	if proxies > 0 {
		if ip := forwardedIP(r.Header.Values("X-Forwarded-For"), proxies); ip != "" {
			return ip
		}
	}
	return hostOf(r.RemoteAddr)
}
