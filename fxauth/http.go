package fxauth

import (
	"net/http"
	"strconv"

	"github.com/martyfx/martyfx/fxhttp"
)

// MiddlewareOrder is where fxauth.Module places Middleware on fxhttp's
// public server (fxhttp.AsMiddleware): after routing, so it knows the
// route's pattern; user middleware at a higher order sees Claims.
const MiddlewareOrder = 100

// Middleware checks the requests of fxhttp's public routes, by the
// pattern they matched (it must run after routing: order >= 0 in
// fxhttp.AsMiddleware). It answers 401 with WWW-Authenticate, 403, 429
// with Retry-After and the RateLimit headers, or 503 when the issuer's
// keys cannot be had. The REST gateway's pattern (Options.SkipPatterns) is
// passed through: the gRPC server checks those calls, by method.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	if a.verifier == nil && a.limiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.skip[r.Pattern] {
			next.ServeHTTP(w, r)
			return
		}
		access, ruled := a.rules.http(r.Pattern)
		ctx, ref, v := a.decide(r.Context(), call{
			transport: "http", target: r.Pattern, access: access, ruled: ruled,
			header:   r.Header.Get("Authorization"),
			clientIP: func() string { return httpClientIP(r, a.cfg.TrustedProxies) },
		})
		if a.limiter != nil {
			h := w.Header()
			h.Set("RateLimit-Limit", strconv.Itoa(v.limit))
			h.Set("RateLimit-Remaining", strconv.Itoa(v.remaining))
			h.Set("RateLimit-Reset", strconv.Itoa(seconds(v.reset)))
		}
		if ref == nil {
			if ctx != r.Context() {
				r = r.WithContext(ctx)
			}
			next.ServeHTTP(w, r)
			return
		}
		switch ref.outcome {
		case outcomeUnauthenticated:
			w.Header().Set("WWW-Authenticate", a.challenge(ref))
			fxhttp.WriteProblem(w, r, http.StatusUnauthorized, "unauthenticated: "+ref.desc)
		case outcomeDenied:
			if c := a.challenge(ref); c != "" {
				w.Header().Set("WWW-Authenticate", c)
			}
			fxhttp.WriteProblem(w, r, http.StatusForbidden, "permission denied")
		case outcomeLimited:
			w.Header().Set("Retry-After", strconv.Itoa(seconds(ref.limit.retryAfter)))
			fxhttp.WriteProblem(w, r, http.StatusTooManyRequests, "rate limit exceeded")
		default:
			w.Header().Set("Retry-After", "1")
			fxhttp.WriteProblem(w, r, http.StatusServiceUnavailable, "token verification unavailable")
		}
	})
}
