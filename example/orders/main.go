// Command orders is the martyfx example service. Run it with
// `go run ./example/orders`: it needs nothing installed.
package main

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/fxcore"
)

func main() {
	martyfx.Run(
		fx.Invoke(func(lc fx.Lifecycle, log *zap.Logger, info fxcore.ServiceInfo) {
			lc.Append(fx.StartHook(func() {
				log.Info("orders service started", zap.String("environment", info.Environment))
			}))
		}),
	)
}
