package fxauth_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxauth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func authConfig(is *issuer) fxauth.Config {
	cfg := fxauth.DefaultConfig()
	cfg.Issuer = is.url()
	cfg.Audience = []string{audience}
	cfg.Leeway = 5 * time.Second
	cfg.JWKSMinRefresh = time.Millisecond
	cfg.RolesClaim = "realm_access.roles"
	return cfg
}

func newAuth(t *testing.T, cfg fxauth.Config) (*fxauth.Auth, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	a, err := fxauth.NewAuth(cfg, fxauth.Options{Registerer: reg})
	require.NoError(t, err)
	return a, reg
}

// TestVerifyRejects: each bad token is refused with the reason, a good one
// accepted with its claims.
func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	a, _ := newAuth(t, authConfig(is))
	ctx := context.Background()

	p, err := a.Verify(ctx, is.token(nil))
	require.NoError(t, err)
	require.Equal(t, "alice", p.Subject)
	require.Equal(t, []string{"orders.read"}, p.Scopes)
	require.Equal(t, []string{"viewer"}, p.Roles)
	require.Equal(t, []string{audience}, p.Audience)

	now := time.Now()
	pubDER, err := x509.MarshalPKIXPublicKey(is.signing.priv.Public())
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hsSigner, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", is.signing.kid))
	require.NoError(t, err)
	hsToken, err := jwt.Signed(hsSigner).Claims(is.claims()).Serialize()
	require.NoError(t, err)
	// The same attack with the raw DER as the HMAC key.
	hsDER, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubDER},
		(&jose.SignerOptions{}).WithHeader("kid", is.signing.kid))
	require.NoError(t, err)
	hsDERToken, err := jwt.Signed(hsDER).Claims(is.claims()).Serialize()
	require.NoError(t, err)
	good := is.token(nil)
	noneHeader := b64([]byte(`{"alg":"none","typ":"JWT","kid":"rsa-1"}`))
	noneToken := noneHeader + "." + strings2payload(t, is.claims()) + "."
	tampered := tamper(t, good, func() map[string]any { c := is.claims(); c["sub"] = "mallory"; return c }())
	other := newIssuer(t) // same claims, keys of another issuer
	foreign := other.signWith(other.signing, map[string]any{"iss": is.url()})

	cases := map[string]struct {
		token, reason string
	}{
		"expired":                         {is.token(map[string]any{"exp": now.Add(-time.Minute).Unix(), "iat": now.Add(-time.Hour).Unix(), "nbf": now.Add(-time.Hour).Unix()}), "expired"},
		"not yet valid":                   {is.token(map[string]any{"nbf": now.Add(time.Minute).Unix()}), "not valid yet"},
		"wrong issuer":                    {is.token(map[string]any{"iss": "https://evil.example"}), "wrong issuer"},
		"wrong audience":                  {is.token(map[string]any{"aud": "other-api"}), "wrong audience"},
		"no exp":                          {is.token(map[string]any{"exp": nil}), "no exp claim"},
		"no sub":                          {is.token(map[string]any{"sub": nil}), "no sub claim"},
		"alg none":                        {noneToken, "malformed or algorithm not allowed"},
		"HS256 with the public key (PEM)": {hsToken, "malformed or algorithm not allowed"},
		"HS256 with the public key (DER)": {hsDERToken, "malformed or algorithm not allowed"},
		"tampered payload":                {tampered, "signature not verified by any key of the issuer"},
		"another issuer's key":            {foreign, "signature not verified by any key of the issuer"},
		"garbage":                         {"not.a.jwt", "malformed or algorithm not allowed"},
	}
	for name, c := range cases {
		_, err := a.Verify(ctx, c.token)
		require.Error(t, err, name)
		require.ErrorContains(t, err, c.reason, name)
	}
	// Within the leeway an expired token still passes.
	_, err = a.Verify(ctx, is.token(map[string]any{"exp": now.Add(-2 * time.Second).Unix()}))
	require.NoError(t, err)
}

func strings2payload(t *testing.T, c map[string]any) string {
	t.Helper()
	parts := tamper(t, "a.b.c", c)
	return parts[2 : len(parts)-2]
}

// TestKeyRotation: a token signed with a key published after the JWKS was
// cached is accepted without a restart (one new fetch), and a removed key
// stops working once the keys are fetched again.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	cfg := authConfig(is)
	cfg.JWKSRefresh = time.Hour
	a, reg := newAuth(t, cfg)
	ctx := context.Background()

	old := is.token(nil)
	_, err := a.Verify(ctx, old)
	require.NoError(t, err)
	_, err = a.Verify(ctx, is.token(nil))
	require.NoError(t, err)
	require.EqualValues(t, 1, is.jwksFetches.Load(), "the keys are cached")

	is.rotate(ecKey(t, "ec-2"), false) // the RSA key is withdrawn
	_, err = a.Verify(ctx, old)
	require.NoError(t, err, "the cached key still verifies tokens it signed")
	fresh := is.token(nil)
	p, err := a.Verify(ctx, fresh)
	require.NoError(t, err, "an EC key published after start is picked up")
	require.Equal(t, "alice", p.Subject)
	require.EqualValues(t, 2, is.jwksFetches.Load())
	require.InDelta(t, 2, value(t, reg, "marty_auth_jwks_fetches_total", "result", "ok"), 0)

	_, err = a.Verify(ctx, old)
	require.ErrorContains(t, err, "unknown key id", "once the keys are fetched again, a token verified before with a withdrawn key is refused")

	// An unknown kid fetches again; the old RSA key is gone now.
	rogue := is.signWith(rsaKey(t, "rsa-9"), nil)
	_, err = a.Verify(ctx, rogue)
	require.ErrorContains(t, err, "unknown key id")
}

// TestKeysFetchThrottled: tokens naming unknown key ids fetch the JWKS
// at most once per JWKSMinRefresh.
func TestKeysFetchThrottled(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	cfg := authConfig(is)
	cfg.JWKSMinRefresh = time.Hour
	cfg.JWKSRefresh = time.Hour
	a, _ := newAuth(t, cfg)
	ctx := context.Background()
	_, err := a.Verify(ctx, is.token(nil))
	require.NoError(t, err)
	for i := range 20 {
		_, err := a.Verify(ctx, is.signWith(ecKey(t, "unknown-"+string(rune('a'+i))), nil))
		require.ErrorContains(t, err, "unknown key id")
	}
	require.EqualValues(t, 1, is.jwksFetches.Load())
}

// TestIssuerDownKeepsKeys: once keys are cached, the issuer going down
// does not refuse valid tokens; before any fetch it is "unavailable".
func TestIssuerDownKeepsKeys(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	cfg := authConfig(is)
	cfg.JWKSRefresh = time.Millisecond
	a, reg := newAuth(t, cfg)
	ctx := context.Background()
	tok := is.token(nil)
	_, err := a.Verify(ctx, tok)
	require.NoError(t, err)
	is.srv.Close()
	require.Eventually(t, func() bool {
		_, err := a.Verify(ctx, tok)
		require.NoError(t, err)
		return value(t, reg, "marty_auth_jwks_fetches_total", "result", "error") >= 1
	}, 5*time.Second, 5*time.Millisecond)

	down := newIssuer(t)
	b, _ := newAuth(t, authConfig(down))
	tok = down.token(nil)
	down.srv.Close()
	_, err = b.Verify(ctx, tok)
	require.ErrorContains(t, err, "issuer keys unavailable")
}

// TestCachedTokenExpires: a verified token is remembered, but not past its
// expiry.
func TestCachedTokenExpires(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	cfg := authConfig(is)
	cfg.Leeway = 0
	cfg.JWKSRefresh = time.Hour
	a, _ := newAuth(t, cfg)
	ctx := context.Background()
	tok := is.token(map[string]any{"exp": time.Now().Add(1500 * time.Millisecond).Unix()})
	_, err := a.Verify(ctx, tok)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := a.Verify(ctx, tok)
		return err != nil && strings.Contains(err.Error(), "expired")
	}, 10*time.Second, 20*time.Millisecond)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := fxauth.DefaultConfig()
	ok.Issuer, ok.Audience = "https://id.example.com", []string{"api"}
	require.NoError(t, ok.Validate())
	bad := map[string]func(*fxauth.Config){
		"algorithms":      func(c *fxauth.Config) { c.Algorithms = []string{"HS256"} },
		"algorithms:none": func(c *fxauth.Config) { c.Algorithms = []string{"none"} },
		"audience":        func(c *fxauth.Config) { c.Audience = nil },
		"issuer":          func(c *fxauth.Config) { c.Issuer = "http://id.example.com" },
		"leeway":          func(c *fxauth.Config) { c.Leeway = time.Hour },
		"rules":           func(c *fxauth.Config) { c.Rules = []string{"/a.B/C=admin"} },
		"rate_key":        func(c *fxauth.Config) { c.RateKey = "user" },
		"rate_limit":      func(c *fxauth.Config) { c.RateLimit = -1 },
		"client_secret":   func(c *fxauth.Config) { c.ClientID = "x" },
	}
	for key, mutate := range bad {
		c := ok
		mutate(&c)
		err := c.Validate()
		require.Error(t, err, key)
		want, _, _ := strings.Cut(key, ":")
		require.ErrorContains(t, err, want)
	}
}

// value is the sum of the series of a metric whose labels include the
// given name/value pairs.
func value(t testing.TB, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			} else if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
			}
		}
	}
	return sum
}
