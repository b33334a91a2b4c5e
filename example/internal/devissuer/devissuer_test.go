package devissuer_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/example/internal/devissuer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func post(t *testing.T, h http.Handler, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// The token endpoint's tokens verify with the published key and carry the
// issuer, audience, subject and scope; other grants are refused.
func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	is, err := devissuer.New("http://127.0.0.1:8180", "orders-api")
	require.NoError(t, err)
	h := is.Handler()

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var disc map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &disc))
	require.Equal(t, "http://127.0.0.1:8180", disc["issuer"])
	require.Equal(t, "http://127.0.0.1:8180/jwks", disc["jwks_uri"])

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	var set jose.JSONWebKeySet
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &set))
	require.Len(t, set.Keys, 1)
	require.True(t, set.Keys[0].IsPublic())

	rec = post(t, h, url.Values{"grant_type": {"client_credentials"}, "client_id": {"alice"}, "scope": {"orders.write"}})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
	require.Equal(t, int(devissuer.TokenTTL.Seconds()), out.ExpiresIn)
	tok, err := jwt.ParseSigned(out.AccessToken, []jose.SignatureAlgorithm{jose.RS256})
	require.NoError(t, err)
	var claims jwt.Claims
	var extra struct {
		Scope string `json:"scope"`
	}
	require.NoError(t, tok.Claims(set.Keys[0].Key, &claims, &extra))
	require.NoError(t, claims.Validate(jwt.Expected{Issuer: "http://127.0.0.1:8180", AnyAudience: jwt.Audience{"orders-api"}, Subject: "alice"}))
	require.Equal(t, "orders.write", extra.Scope)

	rec = post(t, h, url.Values{"grant_type": {"password"}})
	require.Equal(t, http.StatusBadRequest, rec.Code)
	require.Contains(t, rec.Body.String(), "unsupported_grant_type")
}
