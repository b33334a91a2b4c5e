package fxauth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/martyfx/martyfx/fxauth"
)

// An Auth without fx: rules from config, its HTTP middleware in front of a
// handler. Without a token the request is refused with a challenge.
func Example() {
	cfg := fxauth.DefaultConfig()
	cfg.Issuer = "https://id.example.com/realms/shop" // fetched on the first token only
	cfg.Audience = []string{"orders-api"}
	cfg.Rules = []string{"GET /v1/orders=scopes:orders.read"}
	a, err := fxauth.NewAuth(cfg, fxauth.Options{Realm: "orders"})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/orders", a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "orders of", fxauth.Subject(r.Context()))
	})))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/v1/orders", nil))
	fmt.Println(rec.Code, rec.Header().Get("WWW-Authenticate"))
	// Output: 401 Bearer realm="orders"
}
