package fxmonitor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
)

// A critical readiness check that fails turns /readyz 503, with a line
// saying why.
func ExampleAsCheck() {
	src, _ := fxcore.NewSourceFrom("", []string{
		"MARTY_LOG_LEVEL=error", "MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
		// The built-in disk, memory and breaker checks depend on the machine.
		"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false", "MARTY_MONITOR_BREAKER_CHECK=false",
	})
	var srv *fxhttp.Server
	app := fx.New(fxcore.Module, fxhttp.Module, fxmonitor.Module, fx.Replace(src), fx.NopLogger,
		fxmonitor.AsCheck(func() fxmonitor.Check {
			return fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true,
				Func: func(context.Context) error { return errors.New("dial tcp 127.0.0.1:5432: connection refused") }}
		}),
		fx.Populate(&srv))
	if err := app.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = app.Stop(context.Background()) }()

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + srv.AdminAddr() + "/readyz")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output:
	// 503 failing
	// [-]db failing: dial tcp 127.0.0.1:5432: connection refused
}
