package fxauth

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/martyfx/martyfx/fxcore"
)

// The values of Config.RateKey.
const (
	// RateKeySubject limits each authenticated caller by its token's
	// subject, and anonymous callers by client IP.
	RateKeySubject = "subject"
	// RateKeyIP limits by client IP only.
	RateKeyIP = "ip"
)

// Config is the "auth" section (MARTY_AUTH_<FIELD>). Authentication is on
// when Issuer is set; rate limiting when RateLimit is above 0; each works
// without the other.
type Config struct {
	// Issuer is the OIDC issuer URL; its discovery document
	// (<issuer>/.well-known/openid-configuration) names the JWKS. Tokens
	// must carry exactly this "iss". https, except on a loopback host.
	Issuer string `koanf:"issuer"`
	// Audience lists the accepted "aud" values (comma-separated): a token
	// must name at least one. Required with Issuer.
	Audience []string `koanf:"audience"`
	// Algorithms is the allow-list of JWS algorithms (comma-separated):
	// asymmetric ones only (RS*, PS*, ES*, EdDSA); "none" and HMAC are
	// refused.
	Algorithms []string `koanf:"algorithms"`
	// Leeway is the clock skew allowed on exp, nbf and iat (0 to 5m).
	Leeway time.Duration `koanf:"leeway"`
	// JWKSURL skips discovery and fetches the keys from this URL.
	JWKSURL string `koanf:"jwks_url"`
	// JWKSRefresh is how long fetched keys are used before they are
	// fetched again.
	JWKSRefresh time.Duration `koanf:"jwks_refresh"`
	// JWKSMinRefresh is the least time between two fetches of the keys: a
	// token naming an unknown key id fetches them again (key rotation) at
	// most this often.
	JWKSMinRefresh time.Duration `koanf:"jwks_min_refresh"`
	// HTTPTimeout bounds a discovery, JWKS or token request to the issuer.
	HTTPTimeout time.Duration `koanf:"http_timeout"`
	// TokenCache is how many verified tokens are remembered, so that a
	// token used again is not verified again until it expires or the keys
	// are fetched again; 0 verifies every time.
	TokenCache int `koanf:"token_cache"`
	// ScopeClaim is the claim holding the token's scopes: a space-separated
	// string ("scope") or an array ("scp").
	ScopeClaim string `koanf:"scope_claim"`
	// RolesClaim is the dot-separated path of the claim holding roles
	// ("realm_access.roles", "groups"); empty means no roles.
	RolesClaim string `koanf:"roles_claim"`
	// Rules are authorization rules from config, comma-separated
	// "TARGET=ACCESS" items; TARGET is a gRPC full method
	// ("/orders.v1.Orders/Get"), a whole service ("/orders.v1.Orders/*") or
	// an HTTP route pattern as registered ("POST /v1/orders"); ACCESS is
	// public, authenticated, "scopes:a b" (all of them) or "roles:x y"
	// (any of them). They override rules registered with AsRule.
	Rules []string `koanf:"rules"`

	// RateLimit is the requests per second each caller may make (token
	// bucket); 0 turns rate limiting off.
	RateLimit float64 `koanf:"rate_limit"`
	// RateBurst is the bucket's size; 0 means RateLimit rounded up.
	RateBurst int `koanf:"rate_burst"`
	// RateKey says who a caller is: subject (the token's subject, the
	// client IP for anonymous calls) or ip.
	RateKey string `koanf:"rate_key"`
	// RatePerRoute gives each caller one bucket per gRPC method or HTTP
	// route instead of one for all of them.
	RatePerRoute bool `koanf:"rate_per_route"`
	// RateMaxKeys bounds the callers tracked in memory; idle ones are
	// dropped first.
	RateMaxKeys int `koanf:"rate_max_keys"`
	// RateRedisURL shares the limit across replicas through Redis
	// (redis://[:password@]host:port/db; GCRA). Empty: each replica limits
	// on its own. When Redis is down the replica limits on its own.
	RateRedisURL string `koanf:"rate_redis_url"`
	// RateRedisPrefix starts the Redis keys of the limiter.
	RateRedisPrefix string `koanf:"rate_redis_prefix"`
	// RateRedisTimeout bounds one Redis call of the limiter.
	RateRedisTimeout time.Duration `koanf:"rate_redis_timeout"`
	// TrustedProxies is how many proxies in front of the service append to
	// X-Forwarded-For: the client IP is the entry that many places from the
	// right. 0 uses the connection's address.
	TrustedProxies int `koanf:"trusted_proxies"`

	// ClientID and ClientSecret are this service's own OAuth2 client, for
	// calls to other services with a client-credentials token. Empty: no
	// own token (calls can still forward the caller's).
	ClientID     string `koanf:"client_id"`
	ClientSecret string `koanf:"client_secret"`
	// TokenURL is the token endpoint; empty uses the issuer's (discovery).
	TokenURL string `koanf:"token_url"`
	// ClientScopes are the scopes asked for the client's token.
	ClientScopes []string `koanf:"client_scopes"`
	// ClientAudience, when set, is sent as the "audience" parameter of the
	// token request (Auth0, Keycloak and others use it to pick the API).
	ClientAudience string `koanf:"client_audience"`
}

// DefaultAlgorithms are the asymmetric JWS algorithms allowed by default.
var DefaultAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// DefaultConfig returns the defaults: authentication and rate limiting
// off, asymmetric algorithms, 30s leeway, keys refreshed every 15 minutes
// and at most every 10 seconds.
func DefaultConfig() Config {
	return Config{
		Algorithms:       slices.Clone(DefaultAlgorithms),
		Leeway:           30 * time.Second,
		JWKSRefresh:      15 * time.Minute,
		JWKSMinRefresh:   10 * time.Second,
		HTTPTimeout:      5 * time.Second,
		TokenCache:       10_000,
		ScopeClaim:       "scope",
		RateKey:          RateKeySubject,
		RateMaxKeys:      100_000,
		RateRedisPrefix:  "marty:ratelimit:",
		RateRedisTimeout: 100 * time.Millisecond,
	}
}

// Enabled reports whether authentication is on (Issuer is set).
func (c Config) Enabled() bool { return c.Issuer != "" }

// RateLimited reports whether rate limiting is on.
func (c Config) RateLimited() bool { return c.RateLimit > 0 }

// Validate checks the values.
func (c Config) Validate() error {
	if c.Issuer != "" {
		if err := checkURL("issuer", c.Issuer); err != nil {
			return err
		}
		if len(c.Audience) == 0 || slices.Contains(c.Audience, "") {
			return fxcore.Invalid("audience", strings.Join(c.Audience, ","), "one or more audiences (the API's identifier in the tokens' aud) when issuer is set")
		}
	}
	if c.JWKSURL != "" {
		if err := checkURL("jwks_url", c.JWKSURL); err != nil {
			return err
		}
	}
	if c.TokenURL != "" {
		if err := checkURL("token_url", c.TokenURL); err != nil {
			return err
		}
	}
	if len(c.Algorithms) == 0 {
		return fxcore.Invalid("algorithms", "", "one or more of "+strings.Join(DefaultAlgorithms, ","))
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(DefaultAlgorithms, a) {
			return fxcore.Invalid("algorithms", a, "asymmetric algorithms only, from "+strings.Join(DefaultAlgorithms, ",")+` ("none" and HMAC are never accepted)`)
		}
	}
	if c.Leeway < 0 || c.Leeway > 5*time.Minute {
		return fxcore.Invalid("leeway", c.Leeway.String(), "0 to 5m")
	}
	for key, d := range map[string]time.Duration{"jwks_refresh": c.JWKSRefresh, "jwks_min_refresh": c.JWKSMinRefresh, "http_timeout": c.HTTPTimeout} {
		if d <= 0 {
			return fxcore.Invalid(key, d.String(), "a positive duration")
		}
	}
	if c.JWKSMinRefresh > c.JWKSRefresh {
		return fxcore.Invalid("jwks_min_refresh", c.JWKSMinRefresh.String(), "at most jwks_refresh ("+c.JWKSRefresh.String()+")")
	}
	if c.TokenCache < 0 {
		return fxcore.Invalid("token_cache", c.TokenCache, "an integer >= 0 (0: no cache)")
	}
	if c.ScopeClaim == "" {
		return fxcore.Invalid("scope_claim", "", `a claim name ("scope", "scp")`)
	}
	if _, err := parseRules(c.Rules); err != nil {
		return fxcore.Invalid("rules", strings.Join(c.Rules, ","), err.Error())
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		return fxcore.Invalid("rate_limit", c.RateLimit, "requests per second >= 0 (0: off)")
	}
	if c.RateBurst < 0 {
		return fxcore.Invalid("rate_burst", c.RateBurst, "an integer >= 0 (0: rate_limit rounded up)")
	}
	if err := fxcore.OneOf("rate_key", c.RateKey, RateKeySubject, RateKeyIP); err != nil {
		return err
	}
	if c.RateMaxKeys < 1 {
		return fxcore.Invalid("rate_max_keys", c.RateMaxKeys, "a positive integer")
	}
	if c.RateRedisURL != "" {
		if u, err := url.Parse(c.RateRedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return fxcore.Invalid("rate_redis_url", redisHost(c.RateRedisURL), "a redis:// or rediss:// URL")
		}
	}
	if c.RateRedisTimeout <= 0 {
		return fxcore.Invalid("rate_redis_timeout", c.RateRedisTimeout.String(), "a positive duration")
	}
	if c.TrustedProxies < 0 || c.TrustedProxies > 16 {
		return fxcore.Invalid("trusted_proxies", c.TrustedProxies, "0 to 16")
	}
	if c.ClientID != "" && c.ClientSecret == "" {
		return fxcore.Invalid("client_secret", "", "the client's secret when client_id is set")
	}
	if c.ClientID != "" && c.TokenURL == "" && c.Issuer == "" {
		return fxcore.Invalid("token_url", "", "a token endpoint URL, or an issuer to discover it, when client_id is set")
	}
	return nil
}

// algorithms is the allow-list as go-jose's type.
func (c Config) algorithms() []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(c.Algorithms))
	for i, a := range c.Algorithms {
		out[i] = jose.SignatureAlgorithm(a)
	}
	return out
}

// burst is the bucket size.
func (c Config) burst() int {
	if c.RateBurst > 0 {
		return c.RateBurst
	}
	return max(1, int(math.Ceil(c.RateLimit)))
}

// checkURL accepts an absolute https URL, or http on a loopback host
// (development and tests).
func checkURL(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fxcore.Invalid(key, raw, "an absolute https:// URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if loopback(u.Hostname()) {
			return nil
		}
	}
	return fxcore.Invalid(key, raw, "an https:// URL (http only on localhost or a loopback address)")
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String hides the client secret.
func (c Config) String() string {
	secret := ""
	if c.ClientSecret != "" {
		secret = "REDACTED"
	}
	return fmt.Sprintf("fxauth.Config{Issuer:%q Audience:%q ClientID:%q ClientSecret:%q RateLimit:%v}", c.Issuer, c.Audience, c.ClientID, secret, c.RateLimit)
}
