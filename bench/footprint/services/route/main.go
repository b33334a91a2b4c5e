// Command route is the smallest real martyfx service: one HTTP route
// through martyfx.Run (every module of martyfx.Modules, nothing else
// registered).
package main

import (
	"net/http"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/fxhttp"
)

func main() {
	martyfx.Run(fxhttp.AsRoute("GET /hello", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("hello\n"))
		})
	}))
}
