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

// adminGuard requires the admin token (Config.AdminToken) on every admin
// route: "Authorization: Bearer <token>", the AdminTokenCookie cookie, or a
// "token" query parameter, which sets the cookie and redirects to the same
// URL without it (so the token leaves the address bar). token "" is no guard.
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
		if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && match(strings.TrimSpace(auth)) {
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
		http.Error(w, "fxhttp: the admin server needs its token (MARTY_HTTP_ADMIN_TOKEN): "+
			"send Authorization: Bearer <token>, or open the page once with ?token=<token>", http.StatusUnauthorized)
	})
}

// adminHandler guards an admin route: the optional token, and Go's
// cross-origin protection, so a page on another site cannot make the
// operator's browser POST to state-changing admin routes (re-drive a dead
// letter, ...). Requests without browser headers (curl, kubelet, Prometheus)
// and safe methods pass.
func adminHandler(cfg Config, h http.Handler) http.Handler {
	return http.NewCrossOriginProtection().Handler(adminGuard(cfg.AdminToken, cfg.TLS.Enabled(), h))
}
