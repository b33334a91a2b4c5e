package fxhttp

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// AdminTokenCookie is the cookie that carries the admin token for browsers,
// set when a page is opened once with ?token=<token>.
const AdminTokenCookie = "marty_admin_token"

// adminRoutes decides how each admin route is served, sorted by pattern:
//
//   - open routes (Route.Open: probes, /metrics) need no token, ever;
//   - protected routes need cfg.AdminToken when it is set; without one
//     they are left out in production (their patterns are returned in
//     withheld, for the start-up warning) and served open elsewhere, on a
//     developer's box.
//
// Every served route also refuses cross-site browser requests with unsafe
// methods (http.CrossOriginProtection), so a page on another site cannot
// make the operator's browser re-drive a dead letter. Requests without
// browser headers (curl, kubelet, Prometheus) and safe methods pass.
func adminRoutes(cfg Config, production bool, routes []Route) (serve []Route, withheld []string) {
	cop := http.NewCrossOriginProtection()
	secure := cfg.TLS.ServerOn()
	for _, rt := range sortedRoutes(routes) {
		token := cfg.AdminToken
		switch {
		case rt.Open:
			token = ""
		case token == "" && production:
			withheld = append(withheld, rt.Pattern)
			continue
		}
		rt.Handler = cop.Handler(adminGuard(token, secure, rt.Handler))
		serve = append(serve, rt)
	}
	return serve, withheld
}

// adminGuard requires the admin token: "Authorization: Bearer <token>" (the
// scheme in any case, RFC 9110 §11.1), the AdminTokenCookie cookie, or a
// "token" query parameter, which sets the cookie and redirects to the same
// URL without it (so the token leaves the address bar). token "" is no
// guard.
func adminGuard(token string, secure bool, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	match := func(got string) bool {
		g := sha256.Sum256([]byte(got))
		return got != "" && subtle.ConstantTimeCompare(g[:], want[:]) == 1
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got, ok := bearerToken(r.Header.Get("Authorization")); ok && match(got) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(AdminTokenCookie); err == nil && match(c.Value) {
			next.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query(); q.Has("token") && match(q.Get("token")) {
			http.SetCookie(w, &http.Cookie{Name: AdminTokenCookie, Value: token, Path: "/",
				HttpOnly: true, Secure: secure, SameSite: http.SameSiteStrictMode})
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				q.Del("token")
				u := *r.URL
				u.RawQuery = q.Encode()
				http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="admin"`)
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "fxhttp: this admin route needs the admin token (MARTY_HTTP_ADMIN_TOKEN): "+
			"send Authorization: Bearer <token>, or open the page once with ?token=<token>", http.StatusUnauthorized)
	})
}

// bearerToken returns the credentials of an Authorization header with the
// Bearer scheme. The scheme is case-insensitive and separated from the
// token by one or more spaces or tabs (RFC 9110 §11.1, §11.4).
func bearerToken(h string) (string, bool) {
	i := strings.IndexAny(h, " \t")
	if i < 0 || !strings.EqualFold(h[:i], "Bearer") {
		return "", false
	}
	return strings.Trim(h[i:], " \t"), true
}
