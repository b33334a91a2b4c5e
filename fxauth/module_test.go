package fxauth_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

// TestOffByDefault: without MARTY_AUTH_ISSUER and MARTY_AUTH_RATE_LIMIT
// the module checks nothing, and refuses nothing.
func TestOffByDefault(t *testing.T) {
	t.Parallel()
	a := startAppRules(t, nil, nil)
	got, _, err := a.call(t, "", "Echo", "")
	require.NoError(t, err)
	require.Equal(t, "sub=", got)
	res, _ := a.get(t, "", "/v1/norule")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Zero(t, value(t, a.reg, "marty_auth_requests_total"))
}

// TestBadConfigFailsStart: an invalid setting fails the app with the
// variable's name.
func TestBadConfigFailsStart(t *testing.T) {
	t.Parallel()
	for env, name := range map[string]string{
		"MARTY_AUTH_ALGORITHMS=HS256,RS256":   "MARTY_AUTH_ALGORITHMS",
		"MARTY_AUTH_ISSUER=http://id.example": "MARTY_AUTH_ISSUER",
		"MARTY_AUTH_RULES=/a.B/C=admins":      "MARTY_AUTH_RULES",
	} {
		src, err := fxcore.NewSourceFrom("", []string{env, "MARTY_AUTH_AUDIENCE=api"})
		require.NoError(t, err)
		app := fx.New(fxcore.Module, fxhttp.Module, fxgrpc.Module, fxauth.Module, fx.Replace(src), fx.NopLogger)
		require.Error(t, app.Err(), env)
		require.ErrorContains(t, app.Err(), name, env)
	}
}

// TestClientCredentialsRefused: a refused client gets an error naming the
// status, neither the secret nor the endpoint's body.
func TestClientCredentialsRefused(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	cfg := authConfig(is)
	cfg.ClientID, cfg.ClientSecret = is.clientID, "wrong-secret"
	a, err := fxauth.NewAuth(cfg, fxauth.Options{Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	_, err = a.TokenSource().Token()
	require.ErrorContains(t, err, "status 401")
	require.NotContains(t, err.Error(), "wrong-secret")
	require.NotContains(t, err.Error(), "invalid_client")

	// Forward outside a served call sends nothing; Own needs a client.
	b, err := fxauth.NewAuth(authConfig(is), fxauth.Options{Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.Nil(t, b.TokenSource())
	rt := b.Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		require.Empty(t, r.Header.Get("Authorization"))
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
	}), fxauth.Forward)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://127.0.0.1/", nil)
	require.NoError(t, err)
	res, err := rt.RoundTrip(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	res, err = b.Transport(nil, fxauth.Own).RoundTrip(req)
	if res != nil {
		_ = res.Body.Close()
	}
	require.ErrorContains(t, err, "MARTY_AUTH_CLIENT_ID")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
