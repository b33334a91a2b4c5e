package fxhttp

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/internal/nettest"
)

const testAdminToken = "s3cret-admin-token-for-tests"

func adminGet(t *testing.T, c *http.Client, url string, hdr ...string) (reply, string) {
	t.Helper()
	return adminDo(t, c, http.MethodGet, url, hdr...)
}

func adminDo(t *testing.T, c *http.Client, method, url string, hdr ...string) (reply, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return replyOf(resp), string(b)
}

// The admin routes the modules register, by kind: fxmonitor's probes and
// /metrics are open; the routes that show payloads, status detail or change
// state are protected (the default).
var (
	openAdminPaths = []string{"/livez", "/readyz", "/startupz", "/metrics"}
	// method, path, pattern
	protectedAdminRoutes = [][3]string{
		{http.MethodGet, "/statusz", "GET /statusz"},
		{http.MethodGet, "/events/dead", "GET /events/dead"},
		{http.MethodPost, "/events/dead/7/retry", "POST /events/dead/{id}/retry"},
		{http.MethodGet, "/dashboard/api/state", "/dashboard/"},
	}
)

func testAdminRoutes() []fx.Option {
	var opts []fx.Option
	for _, p := range openAdminPaths {
		opts = append(opts, AsAdminRoute("GET "+p, text("open "+p), Open()))
	}
	for _, r := range protectedAdminRoutes {
		opts = append(opts, AsAdminRoute(r[2], text("protected "+r[2])))
	}
	return append(opts, AsRoute("GET /v1/hello", text("public")))
}

// adminEnv starts an app with the admin routes above, on its own admin
// server or sharing the public one.
func adminEnv(t *testing.T, shared bool, env ...string) (h *harness, adminBase string) {
	t.Helper()
	if shared {
		addr := "127.0.0.1:" + strconv.Itoa(nettest.FreePort(t))
		env = append(env, "MARTY_HTTP_ADDR="+addr, "MARTY_HTTP_ADMIN_ADDR="+addr)
	}
	h = start(t, env, testAdminRoutes()...)
	return h, "http://" + h.srv.AdminAddr()
}

// withheldWarnings are the start-up warnings about protected routes left out.
func (h *harness) withheldWarnings() []observer.LoggedEntry {
	var out []observer.LoggedEntry
	for _, e := range h.logs.FilterLevelExact(zapcore.WarnLevel).All() {
		if strings.Contains(e.Message, "MARTY_HTTP_ADMIN_TOKEN") {
			out = append(out, e)
		}
	}
	return out
}

func forBothAdminLayouts(t *testing.T, fn func(t *testing.T, shared bool)) {
	for _, shared := range []bool{false, true} {
		name := "own admin server"
		if shared {
			name = "admin routes on the public server"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, shared)
		})
	}
}

// In production without a token the protected admin routes are not served
// (404), probes and /metrics are, and start logs exactly one warning that
// names the routes left out and how to serve them.
func TestProductionWithoutTokenWithholdsProtectedAdminRoutes(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"production", "prod", "Production"} {
		t.Run(env, func(t *testing.T) {
			t.Parallel()
			forBothAdminLayouts(t, func(t *testing.T, shared bool) {
				h, admin := adminEnv(t, shared, "MARTY_ENV="+env)
				for _, p := range openAdminPaths {
					resp, body := adminGet(t, h.client, admin+p)
					require.Equal(t, http.StatusOK, resp.StatusCode, p)
					require.Equal(t, "open "+p, body)
				}
				for _, r := range protectedAdminRoutes {
					resp, _ := adminDo(t, h.client, r[0], admin+r[1])
					require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s %s", r[0], r[1])
					// A token sent anyway changes nothing: the route is not there.
					resp, _ = adminDo(t, h.client, r[0], admin+r[1], "Authorization", "Bearer "+testAdminToken)
					require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s %s", r[0], r[1])
				}
				_, body := h.get("/v1/hello")
				require.Equal(t, "public", body)

				warns := h.withheldWarnings()
				require.Len(t, warns, 1, "one warning")
				require.Equal(t, []any{"/dashboard/", "GET /events/dead", "GET /statusz", "POST /events/dead/{id}/retry"},
					warns[0].ContextMap()["routes"])
				require.Contains(t, warns[0].Message, "MARTY_ENV is production and MARTY_HTTP_ADMIN_TOKEN is not set")
				require.Contains(t, warns[0].Message, "set it (e.g. from a Kubernetes Secret)")
				require.Contains(t, warns[0].Message, "probes and /metrics stay open")
			})
		})
	}
}

// In production with a token the protected routes need it (the Bearer
// scheme in any case), probes and /metrics do not; nothing is withheld.
func TestProductionWithTokenProtectsOnlyProtectedAdminRoutes(t *testing.T) {
	t.Parallel()
	forBothAdminLayouts(t, func(t *testing.T, shared bool) {
		h, admin := adminEnv(t, shared, "MARTY_ENV=production", "MARTY_HTTP_ADMIN_TOKEN="+testAdminToken)
		for _, p := range openAdminPaths {
			resp, body := adminGet(t, h.client, admin+p)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s is open with a token set too", p)
			require.Equal(t, "open "+p, body)
		}
		for _, r := range protectedAdminRoutes {
			resp, body := adminDo(t, h.client, r[0], admin+r[1])
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%s %s", r[0], r[1])
			require.Equal(t, `Bearer realm="admin"`, resp.Header.Get("WWW-Authenticate"))
			require.NotContains(t, body, testAdminToken)
			for _, scheme := range []string{"Bearer ", "bearer ", "BEARER ", "BeArEr ", "Bearer    ", "Bearer\t"} {
				resp, body := adminDo(t, h.client, r[0], admin+r[1], "Authorization", scheme+testAdminToken)
				require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s with %q", r[0], r[1], scheme)
				require.Equal(t, "protected "+r[2], body)
			}
		}
		_, body := h.get("/v1/hello")
		require.Equal(t, "public", body, "the public routes need no token")
		require.Empty(t, h.withheldWarnings())
	})
}

// Outside production without a token every admin route is served, as on a
// developer's box, and nothing is logged about it.
func TestDevelopmentWithoutTokenServesEveryAdminRoute(t *testing.T) {
	t.Parallel()
	for _, env := range []string{"development", "staging", "test"} {
		t.Run(env, func(t *testing.T) {
			t.Parallel()
			forBothAdminLayouts(t, func(t *testing.T, shared bool) {
				h, admin := adminEnv(t, shared, "MARTY_ENV="+env)
				for _, p := range openAdminPaths {
					resp, _ := adminGet(t, h.client, admin+p)
					require.Equal(t, http.StatusOK, resp.StatusCode, p)
				}
				for _, r := range protectedAdminRoutes {
					resp, body := adminDo(t, h.client, r[0], admin+r[1])
					require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s", r[0], r[1])
					require.Equal(t, "protected "+r[2], body)
				}
				require.Empty(t, h.withheldWarnings())
			})
		})
	}
}

// A disabled admin server only logs that it is disabled, not a second
// warning about withheld routes.
func TestProductionWithoutAdminServerLogsOneWarning(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_ENV=production", "MARTY_HTTP_ADMIN_ADDR="}, testAdminRoutes()...)
	require.Empty(t, h.withheldWarnings())
	require.Len(t, h.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("admin server disabled").All(), 1)
}

// Without Fx, ServerOptions.Info says whether the app runs in production.
func TestNewServerWithoutFxWithholdsInProduction(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:1", "127.0.0.1:1" // shared, never started
	routes := []Route{
		{Pattern: "GET /livez", Handler: text("alive"), Open: true},
		{Pattern: "GET /statusz", Handler: text("status")},
	}
	serve := func(env string) (live, status int) {
		s, err := NewServer(cfg, ServerOptions{Logger: zap.NewNop(), Info: fxcore.ServiceInfo{Environment: env}, AdminRoutes: routes})
		require.NoError(t, err)
		get := func(path string) int {
			w := httptest.NewRecorder()
			s.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			return w.Code
		}
		return get("/livez"), get("/statusz")
	}
	live, status := serve("production")
	require.Equal(t, http.StatusOK, live)
	require.Equal(t, http.StatusNotFound, status)
	live, status = serve("")
	require.Equal(t, http.StatusOK, live)
	require.Equal(t, http.StatusOK, status, "the zero ServiceInfo is not production")
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]string{
		"Bearer abc":      "abc",
		"bearer abc":      "abc",
		"BEARER abc":      "abc",
		"Bearer   abc  ":  "abc",
		"Bearer\tabc":     "abc",
		"Bearer \t abc":   "abc",
		"bEaReR abc.def=": "abc.def=",
	} {
		got, ok := bearerToken(h)
		require.True(t, ok, h)
		require.Equal(t, want, got, h)
	}
	for _, h := range []string{"", "Bearer", "Bearerabc", "Basic abc", "Bear abc", "Bearers abc", " Bearer"} {
		got, ok := bearerToken(h)
		require.False(t, ok && got != "", "%q gave %q", h, got)
	}
}

func TestAdminTokenGuardsProtectedRoutesAndWrongCredentials(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_HTTP_ADMIN_TOKEN=" + testAdminToken},
		AsRoute("GET /v1/hello", func() http.Handler { return text("public") }),
		AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }, Open()),
		AsAdminRoute("GET /statusz", func() http.Handler { return text("status") }),
		AsAdminRoute("POST /events/dead/{id}/retry", func() http.Handler { return text("redriven") }),
	)
	admin := "http://" + h.srv.AdminAddr()

	// No token, a wrong one, a wrong scheme, no separator: 401 with a
	// challenge, and the token never appears in the answer.
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Basic " + testAdminToken},
		{"Authorization", "Bearer" + testAdminToken}, {"Authorization", "Bearer"}, {"Cookie", AdminTokenCookie + "=nope"}} {
		resp, body := adminGet(t, h.client, admin+"/statusz", hdr...)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%v", hdr)
		require.Equal(t, `Bearer realm="admin"`, resp.Header.Get("WWW-Authenticate"))
		require.Contains(t, body, "MARTY_HTTP_ADMIN_TOKEN")
		require.NotContains(t, body, testAdminToken)
	}
	resp, _ := adminGet(t, h.client, admin+"/statusz?token=wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = adminDo(t, h.client, http.MethodPost, admin+"/events/dead/1/retry")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "state-changing routes too")

	// The open route needs nothing, and a wrong token does not hurt it.
	resp, body := adminGet(t, h.client, admin+"/livez")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "alive", body)
	resp, _ = adminGet(t, h.client, admin+"/livez", "Authorization", "Bearer wrong")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// The bearer header.
	resp, body = adminGet(t, h.client, admin+"/statusz", "Authorization", "Bearer "+testAdminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "status", body)

	// The public server is not guarded.
	_, body = h.get("/v1/hello")
	require.Equal(t, "public", body)

	// A browser: ?token= sets the cookie and redirects to the URL without
	// it; later requests carry the cookie alone.
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	var redirects []string
	browser := &http.Client{Jar: jar, Transport: h.client.Transport, CheckRedirect: func(r *http.Request, _ []*http.Request) error {
		redirects = append(redirects, r.URL.RequestURI())
		return nil
	}}
	resp, body = adminGet(t, browser, admin+"/statusz?verbose=1&token="+testAdminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "status", body)
	require.Equal(t, []string{"/statusz?verbose=1"}, redirects, "the token leaves the address bar")
	var cookie *http.Cookie
	for _, c := range resp.Request.Cookies() {
		if c.Name == AdminTokenCookie {
			cookie = c
		}
	}
	require.NotNil(t, cookie, "the redirected request carried the cookie")
	resp, body = adminGet(t, browser, admin+"/statusz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "status", body)
	req, _ := http.NewRequest(http.MethodPost, admin+"/events/dead/1/retry", strings.NewReader(""))
	posted, err := browser.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(posted.Body)
	posted.Body.Close()
	require.Equal(t, "redriven", string(b))
}

func TestAdminTokenSetCookieAttributes(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_HTTP_ADMIN_TOKEN=" + testAdminToken},
		AsAdminRoute("GET /statusz", func() http.Handler { return text("status") }))
	noFollow := &http.Client{Transport: h.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, _ := adminGet(t, noFollow, "http://"+h.srv.AdminAddr()+"/statusz?token="+testAdminToken)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/statusz", resp.Header.Get("Location"))
	sc := resp.Header.Get("Set-Cookie")
	require.Contains(t, sc, AdminTokenCookie+"=")
	require.Contains(t, sc, "HttpOnly")
	require.Contains(t, sc, "SameSite=Strict")
	require.Contains(t, sc, "Path=/")
	require.NotContains(t, sc, "Secure", "plain HTTP: a Secure cookie would be dropped")
}
