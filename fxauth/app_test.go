package fxauth_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

// The test service, written by hand: test.Echo with unary methods that
// answer the caller's subject, and a server stream.
type echoServer interface{ isEcho() }

type svc struct {
	conn func(mode fxauth.Outgoing) *grpc.ClientConn
}

func (*svc) isEcho() {}

func (s *svc) handle(ctx context.Context, method string, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	if method == "Relay" {
		mode := fxauth.Forward
		if in.GetValue() == "own" {
			mode = fxauth.Own
		}
		out := new(wrapperspb.StringValue)
		if err := s.conn(mode).Invoke(ctx, "/test.Echo/Echo", in, out); err != nil {
			return nil, err
		}
		return wrapperspb.String("relayed " + out.GetValue()), nil
	}
	return wrapperspb.String("sub=" + fxauth.Subject(ctx)), nil
}

func unaryMethod(name string) grpc.MethodDesc {
	return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, req any) (any, error) {
			return srv.(*svc).handle(ctx, name, req.(*wrapperspb.StringValue))
		}
		if ic == nil {
			return h(ctx, in)
		}
		return ic(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/test.Echo/" + name}, h)
	}}
}

var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*echoServer)(nil),
	Methods:     []grpc.MethodDesc{unaryMethod("Echo"), unaryMethod("Admin"), unaryMethod("Public"), unaryMethod("Relay"), unaryMethod("Norule")},
	Streams: []grpc.StreamDesc{{StreamName: "Watch", ServerStreams: true, Handler: func(_ any, stream grpc.ServerStream) error {
		in := new(wrapperspb.StringValue)
		if err := stream.RecvMsg(in); err != nil {
			return err
		}
		for range 2 {
			if err := stream.SendMsg(wrapperspb.String("sub=" + fxauth.Subject(stream.Context()))); err != nil {
				return err
			}
		}
		return nil
	}}},
}

// registerGateway maps GET /gw/echo to test.Echo/Echo, as generated
// grpc-gateway code does.
func registerGateway(_ context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error {
	return mux.HandlePath("GET", "/gw/echo", func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		_, outbound := runtime.MarshalerForRequest(mux, r)
		ctx, err := runtime.AnnotateContext(r.Context(), mux, r, "/test.Echo/Echo", runtime.WithHTTPPathPattern("/gw/echo"))
		if err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		var md runtime.ServerMetadata
		out := new(wrapperspb.StringValue)
		err = conn.Invoke(ctx, "/test.Echo/Echo", wrapperspb.String(""), out, grpc.Header(&md.HeaderMD), grpc.Trailer(&md.TrailerMD))
		ctx = runtime.NewServerMetadataContext(ctx, md)
		if err != nil {
			runtime.HTTPError(ctx, mux, outbound, w, r, err)
			return
		}
		runtime.ForwardResponseMessage(ctx, mux, outbound, w, r, out)
	})
}

type app struct {
	grpcAddr, httpURL string
	auth              *fxauth.Auth
	reg               *prometheus.Registry
	logs              *observer.ObservedLogs
	conn              *grpc.ClientConn
}

func subjectHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "sub="+fxauth.Subject(r.Context()))
	})
}

// startApp runs fxcore, fxgrpc (with the gateway), fxhttp and fxauth with
// the test service, routes and rules, configured by env.
func startApp(t *testing.T, env []string, opts ...fx.Option) *app {
	return startAppRules(t, env, defaultRules(), opts...)
}

func defaultRules() []fx.Option {
	return []fx.Option{
		fxauth.AsRule("/test.Echo/*", fxauth.Authenticated()),
		fxauth.AsRule("/test.Echo/Admin", fxauth.Roles("admin")),
		fxauth.AsRule("/test.Echo/Public", fxauth.Public()),
		fxauth.AsRule("GET /v1/me", fxauth.Scopes("orders.read")),
		fxauth.AsRule("GET /v1/open", fxauth.Public()),
		fxauth.AsRule("GET /v1/admin", fxauth.Scopes("orders.admin")),
	}
}

func startAppRules(t *testing.T, env []string, rules []fx.Option, opts ...fx.Option) *app {
	t.Helper()
	a := &app{}
	core, logs := observer.New(zap.DebugLevel)
	a.logs = logs
	s := &svc{}
	src, err := fxcore.NewSourceFrom("", append([]string{
		"MARTY_GRPC_ADDR=127.0.0.1:0", "MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
		"MARTY_HTTP_ACCESS_LOG=all", "MARTY_GRPC_LOG_OK_LEVEL=info", "OTEL_SERVICE_NAME=orders",
	}, env...))
	require.NoError(t, err)
	var gs *fxgrpc.Server
	var hs *fxhttp.Server
	var clients *fxgrpc.Clients
	fapp := fxtest.New(t, append([]fx.Option{
		fxcore.Module, fxhttp.Module, fxgrpc.Module, fxauth.Module,
		fx.Replace(src),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fxgrpc.AsService(&echoDesc, func() echoServer { return s }),
		fxgrpc.AsGateway(registerGateway),
		fxhttp.AsRoute("GET /v1/me", subjectHandler()),
		fxhttp.AsRoute("GET /v1/open", subjectHandler()),
		fxhttp.AsRoute("GET /v1/admin", subjectHandler()),
		fxhttp.AsRoute("GET /v1/norule", subjectHandler()),
		fx.Populate(&gs, &hs, &a.auth, &a.reg, &clients),
		fx.NopLogger,
	}, append(rules, opts...)...)...)
	fapp.RequireStart()
	t.Cleanup(fapp.RequireStop)
	a.grpcAddr, a.httpURL = gs.Addr(), "http://"+hs.Addr()
	conns := map[fxauth.Outgoing]*grpc.ClientConn{}
	for _, mode := range []fxauth.Outgoing{fxauth.Forward, fxauth.Own} {
		c, err := clients.New(a.grpcAddr, a.auth.GRPCClientOption(mode))
		require.NoError(t, err)
		conns[mode] = c
	}
	s.conn = func(m fxauth.Outgoing) *grpc.ClientConn { return conns[m] }
	a.conn, err = grpc.NewClient(a.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.conn.Close() })
	return a
}

func issuerEnv(is *issuer) []string {
	return []string{
		"MARTY_AUTH_ISSUER=" + is.url(), "MARTY_AUTH_AUDIENCE=" + audience,
		"MARTY_AUTH_ROLES_CLAIM=realm_access.roles", "MARTY_AUTH_JWKS_MIN_REFRESH=1ms",
		"MARTY_AUTH_CLIENT_ID=" + is.clientID, "MARTY_AUTH_CLIENT_SECRET=" + is.clientSecret,
	}
}

func bearerCtx(t *testing.T, token string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

func (a *app) call(t *testing.T, token, method, arg string) (string, metadata.MD, error) {
	out := new(wrapperspb.StringValue)
	var hdr metadata.MD
	err := a.conn.Invoke(bearerCtx(t, token), "/test.Echo/"+method, wrapperspb.String(arg), out, grpc.Header(&hdr))
	return out.GetValue(), hdr, err
}

// resp is what a test reads of a response (its body is read and closed).
type resp struct {
	StatusCode int
	Header     http.Header
}

func (a *app) get(t *testing.T, token, path string) (resp, string) {
	req, err := http.NewRequest(http.MethodGet, a.httpURL+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = res.Body.Close() }()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return resp{StatusCode: res.StatusCode, Header: res.Header}, string(b)
}

// TestGRPC: unary and stream calls need a valid token; UNAUTHENTICATED
// (with www-authenticate) vs PERMISSION_DENIED; public methods, health and
// the uncovered-method default; claims in the handler; subject in the log.
func TestGRPC(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	a := startApp(t, issuerEnv(is))
	good := is.token(nil)

	got, _, err := a.call(t, good, "Echo", "")
	require.NoError(t, err)
	require.Equal(t, "sub=alice", got)

	_, hdr, err := a.call(t, "", "Echo", "")
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Equal(t, []string{`Bearer realm="orders"`}, hdr.Get("www-authenticate"))

	_, hdr, err = a.call(t, is.token(map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "nbf": nil, "iat": nil}), "Echo", "")
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	require.Contains(t, hdr.Get("www-authenticate")[0], `error="invalid_token"`)
	require.Contains(t, status.Convert(err).Message(), "expired")

	_, _, err = a.call(t, good, "Admin", "")
	require.Equal(t, codes.PermissionDenied, status.Code(err), "alice is no admin")
	got, _, err = a.call(t, is.token(map[string]any{"realm_access": map[string]any{"roles": []string{"admin"}}}), "Admin", "")
	require.NoError(t, err)
	require.Equal(t, "sub=alice", got)

	got, _, err = a.call(t, "", "Public", "")
	require.NoError(t, err)
	require.Equal(t, "sub=", got)

	// Norule is covered by the service rule; a method no rule names at all
	// is tested in TestDenyByDefault.
	_, _, err = a.call(t, "", "Norule", "")
	require.Equal(t, codes.Unauthenticated, status.Code(err))

	// Stream.
	stream, err := a.conn.NewStream(bearerCtx(t, good), &echoDesc.Streams[0], "/test.Echo/Watch")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(wrapperspb.String("")))
	require.NoError(t, stream.CloseSend())
	msg := new(wrapperspb.StringValue)
	require.NoError(t, stream.RecvMsg(msg))
	require.Equal(t, "sub=alice", msg.GetValue())
	stream, err = a.conn.NewStream(bearerCtx(t, ""), &echoDesc.Streams[0], "/test.Echo/Watch")
	require.NoError(t, err)
	require.NoError(t, stream.SendMsg(wrapperspb.String("")))
	require.Equal(t, codes.Unauthenticated, status.Code(stream.RecvMsg(msg)))

	// Health is public.
	_, err = healthpb.NewHealthClient(a.conn).Check(bearerCtx(t, ""), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)

	// The call log names the subject, never the token.
	lines := a.logs.FilterMessage("grpc call").FilterField(zap.String("subject", "alice")).All()
	require.NotEmpty(t, lines)
	for _, e := range a.logs.All() {
		for _, f := range e.Context {
			require.NotContains(t, f.String, good[:40], "a log line carries the token")
		}
	}
	require.Positive(t, value(t, a.reg, "marty_auth_requests_total", "transport", "grpc", "outcome", "unauthenticated"))
	require.Positive(t, value(t, a.reg, "marty_auth_requests_total", "transport", "grpc", "outcome", "denied"))
	require.Positive(t, value(t, a.reg, "marty_auth_requests_total", "transport", "grpc", "outcome", "ok"))
}

// TestHTTP: routes by pattern: 401 with WWW-Authenticate, 403 with
// insufficient_scope, public routes, claims in the handler, the subject
// in the access log; the REST gateway is checked by the gRPC method.
func TestHTTP(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	a := startApp(t, issuerEnv(is))
	good := is.token(nil)

	res, body := a.get(t, good, "/v1/me")
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	require.Equal(t, "sub=alice", body)

	res, _ = a.get(t, "", "/v1/me")
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	require.Equal(t, `Bearer realm="orders"`, res.Header.Get("WWW-Authenticate"))

	res, _ = a.get(t, is.token(map[string]any{"aud": "other"}), "/v1/me")
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	require.Contains(t, res.Header.Get("WWW-Authenticate"), `error="invalid_token"`)

	res, _ = a.get(t, good, "/v1/admin")
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	require.Contains(t, res.Header.Get("WWW-Authenticate"), `error="insufficient_scope", scope="orders.admin"`)

	res, body = a.get(t, "", "/v1/open")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "sub=", body)

	res, _ = a.get(t, good, "/v1/norule")
	require.Equal(t, http.StatusForbidden, res.StatusCode, "a route without a rule is refused")

	// Through the gateway: gRPC's check, HTTP's statuses.
	res, body = a.get(t, good, "/gw/echo")
	require.Equal(t, http.StatusOK, res.StatusCode, body)
	require.Contains(t, body, "sub=alice")
	res, _ = a.get(t, "", "/gw/echo")
	require.Equal(t, http.StatusUnauthorized, res.StatusCode)
	require.Equal(t, `Bearer realm="orders"`, res.Header.Get("WWW-Authenticate"))

	require.NotEmpty(t, a.logs.FilterMessage("http request").FilterField(zap.String("subject", "alice")).All())
	require.Positive(t, value(t, a.reg, "marty_auth_requests_total", "transport", "http", "outcome", "unauthenticated"))
}

// TestDenyByDefault: methods and routes no rule covers are refused, even
// with a valid token, and named in a start warning; config rules work.
func TestDenyByDefault(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	a := startAppRules(t, append(issuerEnv(is), "MARTY_AUTH_RULES=/test.Echo/Public=public,GET /v1/open=public,GET /v1/me=scopes:orders.read"), nil)
	good := is.token(nil)
	_, _, err := a.call(t, good, "Echo", "")
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, _, err = a.call(t, "", "Public", "")
	require.NoError(t, err)
	res, _ := a.get(t, good, "/v1/admin")
	require.Equal(t, http.StatusForbidden, res.StatusCode)
	res, _ = a.get(t, good, "/v1/me")
	require.Equal(t, http.StatusOK, res.StatusCode)
	res, _ = a.get(t, good, "/gw/echo")
	require.Equal(t, http.StatusForbidden, res.StatusCode)

	warn := a.logs.FilterMessageSnippet("no authorization rule").All()
	require.Len(t, warn, 1)
	listed := fmt.Sprint(warn[0].ContextMap()["uncovered"])
	for _, want := range []string{"/test.Echo/Echo", "/test.Echo/Admin", "/test.Echo/Watch", "GET /v1/admin", "GET /v1/norule"} {
		require.Contains(t, listed, want)
	}
	for _, covered := range []string{"/test.Echo/Public", "GET /v1/open", "GET /v1/me", "Health"} {
		require.NotContains(t, listed, covered)
	}
}

// TestOutgoing: a handler's call forwards the caller's token, or uses the
// service's own client-credentials token (fetched once, cached).
func TestOutgoing(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	a := startApp(t, issuerEnv(is))

	got, _, err := a.call(t, is.token(nil), "Relay", "forward")
	require.NoError(t, err)
	require.Equal(t, "relayed sub=alice", got)

	for range 3 {
		got, _, err = a.call(t, is.token(nil), "Relay", "own")
		require.NoError(t, err)
		require.Equal(t, "relayed sub=billing", got)
	}
	require.EqualValues(t, 1, is.tokenIssued.Load(), "the client token is cached")

	// HTTP client: forwards the token of the request being served.
	hc := fxhttp.NewClient(a.auth.HTTPClientOption(fxauth.ForwardOrOwn))
	req, err := http.NewRequest(http.MethodGet, a.httpURL+"/v1/me", nil)
	require.NoError(t, err)
	res, err := hc.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	require.Equal(t, http.StatusForbidden, res.StatusCode, "billing's token lacks orders.read: %s", b)
	require.True(t, strings.Contains(string(b), "permission denied"))
}
