package fxauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
)

// errInvalidToken is a token that is not accepted; the wrapped text says
// why (for the WWW-Authenticate error_description and the logs, never
// anything of the token itself).
var errInvalidToken = errors.New("invalid token")

// errKeys is a failure to get the issuer's keys.
var errKeys = errors.New("issuer keys unavailable")

// verifier checks bearer tokens: signature with the issuer's published
// keys (discovery, then the JWKS, cached and fetched again when a token
// names an unknown key id or the cache is older than JWKSRefresh), the
// algorithm allow-list, and the iss, aud, exp, nbf and iat claims. All
// JOSE parsing and signature checks are go-jose's; discovery is go-oidc's.
type verifier struct {
	cfg     Config
	algs    []jose.SignatureAlgorithm
	client  *http.Client
	log     *zap.Logger
	metrics *metrics
	now     func() time.Time

	fetchMu sync.Mutex // one fetch at a time
	keys    atomic.Pointer[keyState]
	tokenMu sync.Mutex
	tokenEP string // the discovered token endpoint
	jwksURL string // under fetchMu

	cacheMu sync.RWMutex
	cache   map[string]cachedToken // raw token -> its verification
}

// cachedToken is a verified token: valid until until (exp + leeway) as
// long as the keys it was verified with are still the current ones.
type cachedToken struct {
	p     *Principal
	until time.Time
	keys  *keyState
}

// keyState is one fetched JWKS.
type keyState struct {
	byKid   map[string][]jose.JSONWebKey
	all     []jose.JSONWebKey
	fetched time.Time // the last attempt, successful or not
}

func newVerifier(cfg Config, client *http.Client, log *zap.Logger, m *metrics) *verifier {
	v := &verifier{cfg: cfg, algs: cfg.algorithms(), client: client, log: log, metrics: m, now: time.Now, jwksURL: cfg.JWKSURL}
	if cfg.TokenCache > 0 {
		v.cache = make(map[string]cachedToken)
	}
	return v
}

// verify checks a raw token, or finds it verified already: a token seen
// before is not checked again until it expires or the keys are fetched
// again (JWKSRefresh, a rotation, an unknown key id).
func (v *verifier) verify(ctx context.Context, raw string) (*Principal, error) {
	if v.cache == nil {
		return v.verifyToken(ctx, raw)
	}
	v.cacheMu.RLock()
	c, ok := v.cache[raw]
	v.cacheMu.RUnlock()
	if ok && v.now().Before(c.until) && c.keys == v.keys.Load() && v.now().Sub(c.keys.fetched) < v.cfg.JWKSRefresh {
		return c.p, nil
	}
	p, err := v.verifyToken(ctx, raw)
	if err != nil {
		return nil, err
	}
	v.cacheMu.Lock()
	if len(v.cache) >= v.cfg.TokenCache {
		now := v.now()
		for k, e := range v.cache {
			if !now.Before(e.until) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache { // still full: drop some at random
			if len(v.cache) < v.cfg.TokenCache*3/4 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[raw] = cachedToken{p: p, until: p.Expiry.Add(v.cfg.Leeway), keys: v.keys.Load()}
	v.cacheMu.Unlock()
	return p, nil
}

// verifyToken checks a raw token and returns its principal.
func (v *verifier) verifyToken(ctx context.Context, raw string) (*Principal, error) {
	tok, err := jwt.ParseSigned(raw, v.algs)
	if err != nil {
		// Malformed, "none", HMAC or any algorithm off the allow-list.
		return nil, fmt.Errorf("%w: malformed or algorithm not allowed", errInvalidToken)
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("%w: want one signature", errInvalidToken)
	}
	h := tok.Headers[0]
	keys, err := v.keysFor(ctx, h.KeyID)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var all map[string]any
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if tok.Claims(k.Key, &std, &all) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, fmt.Errorf("%w: signature not verified by any key of the issuer", errInvalidToken)
	}
	if std.Expiry == nil {
		return nil, fmt.Errorf("%w: no exp claim", errInvalidToken)
	}
	if std.Subject == "" {
		return nil, fmt.Errorf("%w: no sub claim", errInvalidToken)
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: v.cfg.Issuer, AnyAudience: v.cfg.Audience, Time: v.now()}, v.cfg.Leeway)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return nil, fmt.Errorf("%w: expired", errInvalidToken)
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, fmt.Errorf("%w: not valid yet", errInvalidToken)
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, fmt.Errorf("%w: wrong issuer", errInvalidToken)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, fmt.Errorf("%w: wrong audience", errInvalidToken)
	default:
		return nil, fmt.Errorf("%w: claims", errInvalidToken)
	}
	return &Principal{
		Subject:  std.Subject,
		Issuer:   std.Issuer,
		Audience: []string(std.Audience),
		Expiry:   std.Expiry.Time(),
		Scopes:   claimPath(all, v.cfg.ScopeClaim),
		Roles:    claimPath(all, v.cfg.RolesClaim),
		Raw:      all,
	}, nil
}

// keysFor returns the keys that may have signed a token naming kid (all
// the keys for a token without a kid). An unknown kid fetches the JWKS
// again, at most every JWKSMinRefresh: that is how rotated keys are
// picked up without a restart. When a fetch fails the keys fetched before
// stay in use.
func (v *verifier) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	st := v.keys.Load()
	now := v.now()
	if st != nil {
		age := now.Sub(st.fetched)
		found := st.lookup(kid)
		if len(found) > 0 && age < v.cfg.JWKSRefresh {
			return found, nil
		}
		if len(found) == 0 && age < v.cfg.JWKSMinRefresh {
			return nil, fmt.Errorf("%w: unknown key id", errInvalidToken)
		}
	}
	st, err := v.refresh(ctx, st)
	if st == nil {
		return nil, err
	}
	if found := st.lookup(kid); len(found) > 0 {
		return found, nil
	}
	return nil, fmt.Errorf("%w: unknown key id", errInvalidToken)
}

func (s *keyState) lookup(kid string) []jose.JSONWebKey {
	if kid == "" {
		return s.all
	}
	return s.byKid[kid]
}

// refresh fetches the JWKS unless another caller did since seen was
// loaded; on failure it keeps the previous keys (and returns them with the
// error) and waits JWKSMinRefresh before trying again.
func (v *verifier) refresh(ctx context.Context, seen *keyState) (*keyState, error) {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	if cur := v.keys.Load(); cur != seen {
		return cur, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), v.cfg.HTTPTimeout)
	defer cancel()
	set, err := v.fetch(ctx)
	now := v.now()
	if err != nil {
		v.metrics.jwks.WithLabelValues("error").Inc()
		v.log.Warn("fxauth: fetching the issuer's keys failed; the keys fetched before stay in use",
			zap.String("issuer", v.cfg.Issuer), zap.Error(err))
		next := &keyState{fetched: now}
		if seen != nil {
			next.byKid, next.all = seen.byKid, seen.all
		}
		v.keys.Store(next)
		if seen == nil || len(seen.all) == 0 {
			return nil, fmt.Errorf("%w: %w", errKeys, err)
		}
		return next, nil
	}
	v.metrics.jwks.WithLabelValues("ok").Inc()
	next := &keyState{byKid: map[string][]jose.JSONWebKey{}, fetched: now}
	for _, k := range set.Keys {
		// Public signing keys only: a symmetric ("oct") key would let an
		// HMAC token be checked against published material.
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			continue
		}
		if _, sym := k.Key.([]byte); sym {
			continue
		}
		next.all = append(next.all, k)
		next.byKid[k.KeyID] = append(next.byKid[k.KeyID], k)
	}
	v.keys.Store(next)
	return next, nil
}

// fetch discovers the JWKS URL once, then fetches the key set.
func (v *verifier) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	if v.jwksURL == "" {
		if err := v.discover(ctx); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.jwksURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fxauth: jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	res, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fxauth: fetch jwks %s: %w", v.jwksURL, err)
	}
	defer func() { _ = res.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("fxauth: fetch jwks %s: %w", v.jwksURL, err)
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fxauth: fetch jwks %s: status %d", v.jwksURL, res.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("fxauth: jwks %s: %w", v.jwksURL, err)
	}
	return &set, nil
}

// discover reads the issuer's discovery document (go-oidc checks that it
// names the same issuer).
func (v *verifier) discover(ctx context.Context) error {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.client), v.cfg.Issuer)
	if err != nil {
		return fmt.Errorf("fxauth: discovery at %s: %w", v.cfg.Issuer, err)
	}
	var doc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURI == "" {
		return fmt.Errorf("fxauth: discovery at %s: no jwks_uri", v.cfg.Issuer)
	}
	v.jwksURL = doc.JWKSURI
	v.tokenMu.Lock()
	v.tokenEP = p.Endpoint().TokenURL
	v.tokenMu.Unlock()
	return nil
}

// tokenEndpoint is Config.TokenURL, else the issuer's, discovered.
func (v *verifier) tokenEndpoint(ctx context.Context) (string, error) {
	if v.cfg.TokenURL != "" {
		return v.cfg.TokenURL, nil
	}
	v.tokenMu.Lock()
	ep := v.tokenEP
	v.tokenMu.Unlock()
	if ep != "" {
		return ep, nil
	}
	ctx, cancel := context.WithTimeout(ctx, v.cfg.HTTPTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, v.client), v.cfg.Issuer)
	if err != nil {
		return "", fmt.Errorf("fxauth: discovery at %s: %w", v.cfg.Issuer, err)
	}
	ep = p.Endpoint().TokenURL
	if ep == "" {
		return "", fmt.Errorf("fxauth: discovery at %s: no token_endpoint; set MARTY_AUTH_TOKEN_URL", v.cfg.Issuer)
	}
	v.tokenMu.Lock()
	v.tokenEP = ep
	v.tokenMu.Unlock()
	return ep, nil
}
