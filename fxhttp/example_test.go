package fxhttp_test

import (
	"context"
	"fmt"
	"net/http"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// Admin routes are protected unless registered with fxhttp.Open(): in
// production without MARTY_HTTP_ADMIN_TOKEN only the open ones are served.
func ExampleAsAdminRoute() {
	src, _ := fxcore.NewSourceFrom("", []string{
		"MARTY_ENV=production", "MARTY_LOG_LEVEL=error",
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
	})
	ok := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, body) })
	}
	var srv *fxhttp.Server
	app := fx.New(fxcore.Module, fxhttp.Module, fx.Replace(src), fx.NopLogger,
		fxhttp.AsAdminRoute("GET /livez", ok("ok"), fxhttp.Open()), // probes, metrics: open
		fxhttp.AsAdminRoute("GET /debug/orders", ok("payloads")),   // protected
		fx.Populate(&srv))
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = app.Stop(context.Background()) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	for _, path := range []string{"/livez", "/debug/orders"} {
		resp, err := client.Get("http://" + srv.AdminAddr() + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		_ = resp.Body.Close()
		fmt.Println(path, resp.StatusCode)
	}
	// Output:
	// /livez 200
	// /debug/orders 404
}
