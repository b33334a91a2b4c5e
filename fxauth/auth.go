package fxauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Options are NewAuth's collaborators; every field is optional.
type Options struct {
	// Logger logs key fetches and refusals (the subject, never a token).
	Logger *zap.Logger
	// Registerer takes the marty_auth_* metrics.
	Registerer prometheus.Registerer
	// HTTPClient fetches discovery documents, keys and client tokens;
	// default: one with Config.HTTPTimeout.
	HTTPClient *http.Client
	// Rules are the registered authorization rules (AsRule); Config.Rules
	// override them.
	Rules []Rule
	// SkipPatterns are HTTP route patterns the HTTP middleware passes
	// through untouched because the gRPC server checks them (fxgrpc's REST
	// gateway).
	SkipPatterns []string
	// Realm names the service in WWW-Authenticate challenges.
	Realm string
	// OnSubject is called with each verified caller's subject, on the
	// request's context (fxauth.Module passes fxhttp.SetSubject and
	// fxgrpc.SetSubject so access logs carry it).
	OnSubject []func(ctx context.Context, subject string)
}

// Auth checks calls and requests: bearer token authentication,
// authorization rules and rate limiting, for gRPC (GRPCAuthFunc) and HTTP
// (Middleware) alike.
type Auth struct {
	cfg       Config
	log       *zap.Logger
	verifier  *verifier // nil without an issuer
	rules     *rules
	limiter   rateLimiter // nil without a rate limit
	redis     *redisLimiter
	metrics   *metrics
	skip      map[string]bool
	realm     string
	onSubject []func(context.Context, string)
	now       func() time.Time

	httpClient *http.Client
	ownOnce    sync.Once
	own        *ownToken
}

// NewAuth returns the checks cfg configures. Nothing is fetched before
// the first call that needs a token verified.
func NewAuth(cfg Config, opts Options) (*Auth, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxauth: %w", err)
	}
	configured, _ := parseRules(cfg.Rules) // validated
	r, err := newRules(opts.Rules, configured)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	a := &Auth{cfg: cfg, log: log, rules: r, skip: map[string]bool{}, realm: opts.Realm,
		onSubject: slices.Clone(opts.OnSubject), now: time.Now}
	for _, p := range opts.SkipPatterns {
		a.skip[p] = true
	}
	if a.realm == "" {
		a.realm = "api"
	}
	size := func() float64 { return 0 }
	switch {
	case cfg.RateLimited() && cfg.RateRedisURL != "":
		if a.redis, err = newRedisLimiter(cfg, log); err != nil {
			return nil, err
		}
		a.limiter, size = a.redis, a.redis.size
	case cfg.RateLimited():
		l := localLimiter{newLimiter(cfg)}
		a.limiter, size = l, l.size
	}
	a.metrics, err = newMetrics(opts.Registerer, size)
	if err != nil {
		if a.redis != nil {
			_ = a.redis.close()
		}
		return nil, err
	}
	if a.redis != nil {
		a.redis.metrics = a.metrics
	}
	a.httpClient = opts.HTTPClient
	if a.httpClient == nil {
		a.httpClient = &http.Client{Timeout: cfg.HTTPTimeout}
	}
	if cfg.Enabled() {
		a.verifier = newVerifier(cfg, a.httpClient, log, a.metrics)
	}
	return a, nil
}

// Close releases the rate limiter's Redis connections, if any.
func (a *Auth) Close() error {
	if a.redis != nil {
		return a.redis.close()
	}
	return nil
}

// Config is the configuration in use.
func (a *Auth) Config() Config { return a.cfg }

// Verify checks a raw bearer token (signature, algorithm, iss, aud, exp,
// nbf) and returns its principal; with authentication off it fails.
func (a *Auth) Verify(ctx context.Context, token string) (*Principal, error) {
	if a.verifier == nil {
		return nil, errors.New("fxauth: authentication is off (MARTY_AUTH_ISSUER is not set)")
	}
	p, err := a.verifier.verify(ctx, token)
	if err != nil {
		return nil, fmt.Errorf("fxauth: %w", err)
	}
	return p, nil
}

// refusal is why a call is refused.
type refusal struct {
	outcome string
	desc    string   // public text: why
	scopes  []string // missing scopes (insufficient_scope)
	limit   verdict  // rate_limited
}

// call is what the transports hand to decide.
type call struct {
	transport string
	target    string // gRPC method or HTTP pattern
	access    Access
	ruled     bool
	header    string        // the Authorization value
	clientIP  func() string // the caller's IP, for the rate limit
}

// decide runs authentication, rate limiting and authorization, and
// returns the context the handler sees, or why the call is refused.
func (a *Auth) decide(ctx context.Context, c call) (context.Context, *refusal, verdict) {
	var p *Principal
	authOn := a.verifier != nil
	if authOn {
		if !c.ruled {
			return ctx, a.refuse(c, &refusal{outcome: outcomeDenied, desc: "no authorization rule for " + c.target}), verdict{}
		}
		if !c.access.public() {
			tok, ok := bearer(c.header)
			if !ok {
				return ctx, a.refuse(c, &refusal{outcome: outcomeUnauthenticated, desc: "missing bearer token"}), verdict{}
			}
			var err error
			p, err = a.verifier.verify(ctx, tok)
			if err != nil {
				if errors.Is(err, errKeys) {
					a.log.Warn("fxauth: cannot verify tokens", zap.Error(err))
					return ctx, a.refuse(c, &refusal{outcome: outcomeUnavailable, desc: "token verification unavailable"}), verdict{}
				}
				return ctx, a.refuse(c, &refusal{outcome: outcomeUnauthenticated, desc: strings.TrimPrefix(err.Error(), errInvalidToken.Error()+": ")}), verdict{}
			}
			ctx = withToken(WithClaims(ctx, p), tok)
			if span := trace.SpanFromContext(ctx); span.IsRecording() {
				span.SetAttributes(attribute.String("enduser.id", p.Subject))
			}
			for _, f := range a.onSubject {
				f(ctx, p.Subject)
			}
		}
	}
	var v verdict
	if a.limiter != nil {
		key := c.clientIP()
		if p != nil && a.cfg.RateKey == RateKeySubject {
			key = "sub:" + p.Subject
		}
		if a.cfg.RatePerRoute {
			key += "|" + c.target
		}
		v = a.limiter.take(ctx, key, a.now())
		if !v.ok {
			return ctx, a.refuse(c, &refusal{outcome: outcomeLimited, desc: "rate limit exceeded", limit: v}), v
		}
	}
	if p != nil {
		if ok, missing := c.access.allows(p); !ok {
			return ctx, a.refuse(c, &refusal{outcome: outcomeDenied, desc: "the token lacks the access " + c.access.String(), scopes: missing}), v
		}
	}
	if p == nil && authOn {
		a.metrics.count(c.transport, outcomePublic)
	} else {
		a.metrics.count(c.transport, outcomeOK)
	}
	return ctx, nil, v
}

func (a *Auth) refuse(c call, r *refusal) *refusal {
	a.metrics.count(c.transport, r.outcome)
	if ce := a.log.Check(zap.DebugLevel, "fxauth: refused"); ce != nil {
		ce.Write(zap.String("transport", c.transport), zap.String("target", c.target),
			zap.String("outcome", r.outcome), zap.String("reason", r.desc))
	}
	return r
}

// challenge is the WWW-Authenticate value (RFC 6750) of a refusal.
func (a *Auth) challenge(r *refusal) string {
	switch {
	case r.outcome == outcomeUnauthenticated && r.desc == "missing bearer token":
		return fmt.Sprintf(`Bearer realm=%q`, a.realm)
	case r.outcome == outcomeUnauthenticated:
		return fmt.Sprintf(`Bearer realm=%q, error="invalid_token", error_description=%q`, a.realm, r.desc)
	case r.outcome == outcomeDenied && len(r.scopes) > 0:
		return fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", scope=%q`, a.realm, strings.Join(r.scopes, " "))
	}
	return ""
}
