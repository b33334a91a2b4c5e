package service_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxtest"
)

const testAudience = "orders-api"

// testIssuer is an OIDC issuer inside the test: discovery and JWKS over
// httptest, an RSA key generated here, tokens signed with go-jose.
type testIssuer struct {
	t   testing.TB
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	is := &testIssuer{t: t, key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks",
			"authorization_endpoint":                is.srv.URL + "/authorize",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: key.Public(), KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig"},
		}})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

// token signs a valid token for alice (5 minutes), its claims overlaid
// with over.
func (is *testIssuer) token(over map[string]any) string {
	now := time.Now()
	claims := map[string]any{
		"iss": is.srv.URL, "aud": testAudience, "sub": "alice",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	for k, v := range over {
		claims[k] = v
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	require.NoError(is.t, err)
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	require.NoError(is.t, err)
	return tok
}

// send sends method path with an optional JSON body and bearer token and
// returns the status, the WWW-Authenticate header and the body.
func send(t *testing.T, app *fxtest.App, method, path, body, token string) (int, string, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, app.HTTP().URL(path), rd)
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, data := app.HTTP().Send(req) //nolint:bodyclose // Send reads and closes the body
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(data)
}

// With MARTY_AUTH_ISSUER set, orders' writes need a valid token over gRPC
// and REST (through the gateway); reads, the summary and the in-process
// notifier's route stay public, and no route is left without a rule.
func TestWritesNeedATokenWhenAuthIsOn(t *testing.T) {
	is := newTestIssuer(t)
	app := fxtest.New(t, service.Module, notifier.Module,
		fxtest.Env("MARTY_AUTH_ISSUER="+is.srv.URL, "MARTY_AUTH_AUDIENCE="+testAudience))
	good := is.token(nil)
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx := t.Context()
	withToken := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+good)

	// gRPC writes: UNAUTHENTICATED without a token or with a bad one.
	_, err := c.CreateOrder(ctx, book(1))
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	wrongAud := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+is.token(map[string]any{"aud": "other-api"}))
	_, err = c.CreateOrder(wrongAud, book(1))
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Empty(t, app.Events(), "a refused write publishes nothing")

	// With the token they succeed.
	created, err := c.CreateOrder(withToken, book(1))
	require.NoError(t, err)
	_, err = c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: created.GetId()})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)

	// gRPC reads need none.
	got, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: created.GetId()})
	require.NoError(t, err)
	require.Equal(t, created.GetId(), got.GetId())
	list, err := c.ListOrders(ctx, &ordersv1.ListOrdersRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetOrders(), 1)

	cancelled, err := c.CancelOrder(withToken, &ordersv1.CancelOrderRequest{Id: created.GetId(), Reason: "changed my mind"})
	require.NoError(t, err)
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, cancelled.GetStatus())
	// The watch of a cancelled order sends its status and ends.
	stream, err := c.WatchOrder(ctx, &ordersv1.WatchOrderRequest{Id: created.GetId()})
	require.NoError(t, err)
	change, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, change.GetStatus())

	// REST writes through the gateway: 401 with a Bearer challenge.
	const order = `{"customerId":"alice","items":[{"sku":"book","quantity":2,"unitPriceCents":1250}]}`
	code, challenge, body := send(t, app, http.MethodPost, "/v1/orders", order, "")
	require.Equal(t, http.StatusUnauthorized, code, body)
	require.True(t, strings.HasPrefix(challenge, "Bearer"), "WWW-Authenticate %q", challenge)
	code, _, body = send(t, app, http.MethodPost, "/v1/orders", order, is.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	require.Equal(t, http.StatusUnauthorized, code, "expired token: %s", body)

	code, _, body = send(t, app, http.MethodPost, "/v1/orders", order, good)
	require.Equal(t, http.StatusOK, code, body)
	var rest ordersv1.Order
	require.NoError(t, protojson.Unmarshal([]byte(body), &rest))
	code, _, body = send(t, app, http.MethodPost, "/v1/orders/"+rest.GetId()+":cancel", `{"reason":"no"}`, "")
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, _, body = send(t, app, http.MethodPost, "/v1/orders/"+rest.GetId()+":cancel", `{"reason":"no"}`, good)
	require.Equal(t, http.StatusOK, code, body)

	// REST reads, the summary and the notifications need none.
	for _, path := range []string{"/v1/orders/" + rest.GetId(), "/v1/orders?pageSize=10", "/v1/summary", "/v1/notifications"} {
		code, _, body = send(t, app, http.MethodGet, path, "", "")
		require.Equal(t, http.StatusOK, code, "GET %s: %s", path, body)
	}

	// Every method and route has a rule: no start warning lists any.
	for _, e := range app.Logs().All() {
		require.NotContains(t, e.Message, "no authorization rule", "%v", e.Context)
	}
	require.Equal(t, 4.0, app.Metric(service.MetricOrders, "action", "created")+app.Metric(service.MetricOrders, "action", "cancelled"))
}
