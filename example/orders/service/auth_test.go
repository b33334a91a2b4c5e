package service_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/example/internal/devissuer"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxtest"
)

const testAudience = "orders-api"

// testIssuer serves the example's development OIDC issuer (the one the
// README runs with go run ./example/devissuer) on httptest.
type testIssuer struct {
	*devissuer.Issuer
	t testing.TB
}

func newTestIssuer(t testing.TB) *testIssuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	is, err := devissuer.New("http://"+ln.Addr().String(), testAudience)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(is.Handler())
	require.NoError(t, srv.Listener.Close())
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &testIssuer{Issuer: is, t: t}
}

// fetchToken asks the token endpoint, as the README's curl line does.
func (is *testIssuer) fetchToken() string {
	resp, err := http.PostForm(is.URL()+"/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {"alice"}})
	require.NoError(is.t, err)
	defer resp.Body.Close()
	require.Equal(is.t, http.StatusOK, resp.StatusCode)
	var out struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	require.NoError(is.t, json.NewDecoder(resp.Body).Decode(&out))
	require.Equal(is.t, "Bearer", out.TokenType)
	require.NotEmpty(is.t, out.AccessToken)
	return out.AccessToken
}

// token signs alice's claims overlaid with over.
func (is *testIssuer) token(over map[string]any) string {
	c := is.Claims("alice", "", 5*time.Minute)
	for k, v := range over {
		c[k] = v
	}
	tok, err := is.Sign(c)
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
		fxtest.Env("MARTY_AUTH_ISSUER="+is.URL(), "MARTY_AUTH_AUDIENCE="+testAudience))
	good := is.fetchToken()
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

// The usage printed at start says so when the writes need a token.
func TestAuthNote(t *testing.T) {
	t.Parallel()
	require.Empty(t, service.AuthNote(fxauth.DefaultConfig()))
	cfg := fxauth.DefaultConfig()
	cfg.Issuer, cfg.Audience = "http://127.0.0.1:8180", []string{testAudience}
	note := service.AuthNote(cfg)
	require.Contains(t, note, "MARTY_AUTH_ISSUER=http://127.0.0.1:8180")
	require.Contains(t, note, `-H "Authorization: Bearer $TOKEN"`)
}
