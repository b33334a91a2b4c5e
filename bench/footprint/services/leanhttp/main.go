// Command leanhttp is the lean HTTP-only composition: fxcore, fxtracing,
// fxhttp and fxmonitor with one route, no gRPC, no database, no events.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxtracing"
)

func main() {
	app := fx.New(
		fxcore.Module,
		fxtracing.Module,
		fxhttp.Module,
		fxmonitor.Module,
		fx.WithLogger(fxcore.NewFxLogger),
		fxhttp.AsRoute("GET /hello", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("hello\n"))
			})
		}),
	)
	os.Exit(run(app))
}

// run starts the app, says "footprint: ready" on stderr and stops on
// SIGINT or SIGTERM.
func run(app *fx.App) int {
	if err := app.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "footprint: ready")
	<-app.Wait()
	if err := app.Stop(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "stop:", err)
		return 1
	}
	return 0
}
