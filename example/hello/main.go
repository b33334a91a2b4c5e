// Command hello is the smallest martyfx service: one HTTP route, with
// everything martyfx.Modules brings (probes, metrics, tracing, the admin
// server, graceful stop). The root README.md shows this file whole.
//
//	go run ./example/hello   # then: curl localhost:8080/hello/gopher
package main

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/fxhttp"
)

func main() {
	martyfx.Run( // martyfx.Modules plus these; SIGTERM stops it gracefully
		fxhttp.AsRoute("GET /hello/{name}", newHello),
	)
}

// newHello is a constructor: Fx gives it what it asks for (here the logger).
func newHello(log *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Info("greeting", zap.String("name", r.PathValue("name")))
		fxhttp.WriteJSON(w, http.StatusOK, map[string]string{"hello": r.PathValue("name")})
	})
}
