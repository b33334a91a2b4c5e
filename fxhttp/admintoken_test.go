package fxhttp

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testAdminToken = "s3cret-admin-token-for-tests"

func adminGet(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func TestAdminTokenProtectsEveryAdminRoute(t *testing.T) {
	h := start(t, []string{"MARTY_HTTP_ADMIN_TOKEN=" + testAdminToken},
		AsRoute("GET /v1/hello", func() http.Handler { return text("public") }),
		AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }),
		AsAdminRoute("POST /events/dead/{id}/retry", func() http.Handler { return text("redriven") }),
	)
	admin := "http://" + h.srv.AdminAddr()

	// No token, a wrong one, a wrong scheme: 401 with a challenge, and the
	// token never appears in the answer.
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "Basic " + testAdminToken},
		{"Cookie", AdminTokenCookie + "=nope"}} {
		resp, body := adminGet(t, h.client, admin+"/livez", hdr...)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "%v", hdr)
		require.Equal(t, `Bearer realm="admin"`, resp.Header.Get("WWW-Authenticate"))
		require.Contains(t, body, "MARTY_HTTP_ADMIN_TOKEN")
		require.NotContains(t, body, testAdminToken)
	}
	resp, _ := adminGet(t, h.client, admin+"/livez?token=wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	req, _ := http.NewRequest(http.MethodPost, admin+"/events/dead/1/retry", nil)
	resp, err := h.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "state-changing routes too")

	// The bearer header.
	resp, body := adminGet(t, h.client, admin+"/livez", "Authorization", "Bearer "+testAdminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "alive", body)

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
	resp, body = adminGet(t, browser, admin+"/livez?verbose=1&token="+testAdminToken)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "alive", body)
	require.Equal(t, []string{"/livez?verbose=1"}, redirects, "the token leaves the address bar")
	var cookie *http.Cookie
	for _, c := range resp.Request.Cookies() {
		if c.Name == AdminTokenCookie {
			cookie = c
		}
	}
	require.NotNil(t, cookie, "the redirected request carried the cookie")
	resp, body = adminGet(t, browser, admin+"/livez")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "alive", body)
	req, _ = http.NewRequest(http.MethodPost, admin+"/events/dead/1/retry", strings.NewReader(""))
	resp, err = browser.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "redriven", string(b))
}

func TestAdminTokenSetCookieAttributes(t *testing.T) {
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

func TestAdminTokenOnASharedServerGuardsOnlyAdminRoutes(t *testing.T) {
	addr := "127.0.0.1:" + freePort(t)
	h := start(t, []string{"MARTY_HTTP_ADDR=" + addr, "MARTY_HTTP_ADMIN_ADDR=" + addr, "MARTY_HTTP_ADMIN_TOKEN=" + testAdminToken},
		AsRoute("GET /v1/hello", func() http.Handler { return text("public") }),
		AsAdminRoute("GET /metrics", func() http.Handler { return text("metrics") }))
	resp, _ := h.get("/metrics")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	_, body := h.get("/metrics", "Authorization", "Bearer "+testAdminToken)
	require.Equal(t, "metrics", body)
	_, body = h.get("/v1/hello")
	require.Equal(t, "public", body)
}

func TestNoAdminTokenLeavesTheAdminServerOpen(t *testing.T) {
	h := start(t, nil, AsAdminRoute("GET /livez", func() http.Handler { return text("alive") }))
	resp, body := adminGet(t, h.client, "http://"+h.srv.AdminAddr()+"/livez")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "alive", body)
}
