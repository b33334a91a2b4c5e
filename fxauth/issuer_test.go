package fxauth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"
)

const audience = "orders-api"

// key is a signing key of the test issuer.
type key struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func rsaKey(t testing.TB, kid string) *key {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return &key{kid: kid, alg: jose.RS256, priv: k}
}

func ecKey(t testing.TB, kid string) *key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return &key{kid: kid, alg: jose.ES256, priv: k}
}

// issuer is an OIDC issuer inside the test: discovery, JWKS and a
// client-credentials token endpoint over httptest, keys generated here.
type issuer struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	published []*key // in the JWKS
	signing   *key   // signs new tokens

	jwksFetches  atomic.Int64
	tokenIssued  atomic.Int64
	clientID     string
	clientSecret string
}

func newIssuer(t testing.TB) *issuer {
	is := &issuer{t: t, clientID: "billing", clientSecret: "s3cret"}
	k := rsaKey(t, "rsa-1")
	is.published, is.signing = []*key{k}, k
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.url(), "jwks_uri": is.url() + "/jwks", "token_endpoint": is.url() + "/token",
			"authorization_endpoint":                is.url() + "/authorize",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.jwksFetches.Add(1)
		is.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range is.published {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(set)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		if r.PostFormValue("grant_type") != "client_credentials" || id != is.clientID || secret != is.clientSecret {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		is.tokenIssued.Add(1)
		tok := is.token(map[string]any{"sub": id, "scope": r.PostFormValue("scope")})
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 300})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) url() string { return is.srv.URL }

// rotate publishes k beside the old keys (or alone) and signs with it.
func (is *issuer) rotate(k *key, keepOld bool) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if keepOld {
		is.published = append(is.published, k)
	} else {
		is.published = []*key{k}
	}
	is.signing = k
}

// claims are a valid token's: alice, scope orders.read, 5 minutes.
func (is *issuer) claims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": is.url(), "aud": audience, "sub": "alice",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"scope": "orders.read", "realm_access": map[string]any{"roles": []string{"viewer"}},
	}
}

// token signs the default claims overlaid with over (a nil value deletes
// a claim) with the current signing key.
func (is *issuer) token(over map[string]any) string {
	is.mu.Lock()
	k := is.signing
	is.mu.Unlock()
	return is.signWith(k, over)
}

func (is *issuer) signWith(k *key, over map[string]any) string {
	c := is.claims()
	for name, v := range over {
		if v == nil {
			delete(c, name)
			continue
		}
		c[name] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid))
	require.NoError(is.t, err)
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	require.NoError(is.t, err)
	return tok
}

// tamper replaces the payload of a signed token, keeping its signature.
func tamper(t testing.TB, token string, claims map[string]any) string {
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	b, err := json.Marshal(claims)
	require.NoError(t, err)
	parts[1] = b64(b)
	return strings.Join(parts, ".")
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
