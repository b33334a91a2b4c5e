// Package devissuer is a development OIDC issuer for the example: a key
// generated at start, the discovery document, the JWKS and a token endpoint
// that gives a signed access token to any caller (grant_type
// client_credentials; the client id becomes the subject). It exists so that
// the example's README can show authentication without an identity
// provider; it checks no credentials and must never face a network.
// cmd example/devissuer serves it; the orders tests use it too.
package devissuer

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const keyID = "dev-1"

// Issuer signs tokens for one issuer URL and audience with an RSA key that
// lives as long as the value.
type Issuer struct {
	url      string
	audience string
	key      *rsa.PrivateKey
	signer   jose.Signer
}

// New returns an issuer whose discovery document and tokens name issuerURL
// (where Handler is served) and whose tokens carry audience as "aud".
func New(issuerURL, audience string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("devissuer: generate the key: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", keyID))
	if err != nil {
		return nil, fmt.Errorf("devissuer: signer: %w", err)
	}
	return &Issuer{url: issuerURL, audience: audience, key: key, signer: signer}, nil
}

// URL is the issuer URL (MARTY_AUTH_ISSUER).
func (is *Issuer) URL() string { return is.url }

// Claims are a token's claims for subject with scope (space-separated),
// valid from now for ttl.
func (is *Issuer) Claims(subject, scope string, ttl time.Duration) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": is.url, "aud": is.audience, "sub": subject,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	if scope != "" {
		c["scope"] = scope
	}
	return c
}

// Sign signs claims as they are (RS256, the issuer's key).
func (is *Issuer) Sign(claims map[string]any) (string, error) {
	tok, err := jwt.Signed(is.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("devissuer: sign: %w", err)
	}
	return tok, nil
}

// Token is Sign(Claims(subject, scope, ttl)).
func (is *Issuer) Token(subject, scope string, ttl time.Duration) (string, error) {
	return is.Sign(is.Claims(subject, scope, ttl))
}

// TokenTTL is how long the token endpoint's tokens are valid.
const TokenTTL = time.Hour

// Handler serves GET /.well-known/openid-configuration, GET /jwks and
// POST /token (form grant_type=client_credentials, client_id or Basic
// user as the subject, default "dev", optional scope).
func (is *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": is.url, "jwks_uri": is.url + "/jwks", "token_endpoint": is.url + "/token",
			"authorization_endpoint":                is.url + "/authorize",
			"grant_types_supported":                 []string{"client_credentials"},
			"id_token_signing_alg_values_supported": []string{string(jose.RS256)},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: is.key.Public(), KeyID: keyID, Algorithm: string(jose.RS256), Use: "sig"},
		}})
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		if r.PostFormValue("grant_type") != "client_credentials" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
			return
		}
		sub, _, ok := r.BasicAuth()
		if !ok {
			sub = r.PostFormValue("client_id")
		}
		if sub == "" {
			sub = "dev"
		}
		tok, err := is.Token(sub, r.PostFormValue("scope"), TokenTTL)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"access_token": tok, "token_type": "Bearer", "expires_in": int(TokenTTL.Seconds()),
		})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
