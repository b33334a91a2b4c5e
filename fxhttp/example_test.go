package fxhttp_test

import (
	"context"
	"fmt"
	"io"
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

// Without Fx: NewServer takes the Config and plain options; Start listens,
// Stop drains.
func ExampleNewServer() {
	cfg := fxhttp.DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", "" // a free port, no admin server
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "hello %s", r.PathValue("name"))
	})
	srv, err := fxhttp.NewServer(cfg, fxhttp.ServerOptions{
		Routes: []fxhttp.Route{{Pattern: "GET /hello/{name}", Handler: hello}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := srv.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Stop(context.Background()) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + srv.Addr() + "/hello/gopher")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(body))

	// A pattern that conflicts with another is an error, not a panic.
	_, err = fxhttp.NewServer(cfg, fxhttp.ServerOptions{Routes: []fxhttp.Route{
		{Pattern: "GET /orders/{id}", Handler: hello},
		{Pattern: "GET /orders/{name}", Handler: hello},
	}})
	fmt.Println(err)
	// Output:
	// 200 hello gopher
	// fxhttp: route "GET /orders/{name}" conflicts with route "GET /orders/{id}": some requests match both and neither is more specific; change one of them
}

// AsRoutes mounts a list of routes that a constructor decides on: an empty
// list mounts nothing.
func ExampleAsRoutes() {
	src, _ := fxcore.NewSourceFrom("", []string{
		"MARTY_LOG_LEVEL=error", "MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=",
	})
	versions := func() []fxhttp.Route {
		var routes []fxhttp.Route
		for _, v := range []string{"v1", "v2"} {
			routes = append(routes, fxhttp.Route{Pattern: "GET /" + v + "/ping", Handler: http.HandlerFunc(
				func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, v) })})
		}
		return routes
	}
	var srv *fxhttp.Server
	app := fx.New(fxcore.Module, fxhttp.Module, fx.Replace(src), fx.NopLogger,
		fxhttp.AsRoutes(versions), fx.Populate(&srv))
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = app.Stop(context.Background()) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	for _, path := range []string{"/v1/ping", "/v2/ping"} {
		resp, err := (&http.Client{Transport: tr}).Get("http://" + srv.Addr() + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		fmt.Println(path, string(body))
	}
	// Output:
	// /v1/ping v1
	// /v2/ping v2
}
