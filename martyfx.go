// Package martyfx turns a Go program into a production microservice on Uber
// Fx. A service is a list of fx.Options:
//
//	func main() {
//		martyfx.Run(
//			fxgrpc.AsService(&ordersv1.OrderService_ServiceDesc, orders.NewServer),
//			fxhttp.AsRoute("POST /v1/orders", orders.NewCreateHandler),
//		)
//	}
//
// Modules holds every martyfx module, configured from the environment
// (MARTY_*, OTEL_*) and an optional YAML file (MARTY_CONFIG_FILE).
package martyfx

import (
	"context"
	"errors"
	"fmt"
	"os"

	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtracing"
)

// Modules is every martyfx module, wired together, plus the Fx event log
// routed to zap. Use it as fx.New(append(martyfx.Modules, mine...)...).
//
// The order is the floors of DESIGN.md; Fx resolves the graph whatever the
// order, but it is also the order start hooks run in.
// fxevents/natsjs is not in the list: include natsjs.Module to make NATS
// JetStream the transport of events.
var Modules = []fx.Option{
	fxcore.Module,
	fxtracing.Module,
	fxhttp.Module,
	fxmonitor.Module,
	fxgrpc.Module,
	fxrepo.Module,
	fxevents.Module,
	fx.WithLogger(fxcore.NewFxLogger),
}

// Run builds the app from Modules plus opts, starts it within
// MARTY_START_TIMEOUT, runs until SIGINT or SIGTERM (or a module's
// fx.Shutdowner call), stops it within MARTY_STOP_TIMEOUT and exits the
// process: 0 on a clean stop, 1 when start or stop fails, or the exit code a
// module asked for. The stop runs the servers' stop sequence
// (fxcore.Stopping: readiness off, one drain delay, public HTTP, gRPC,
// admin) before the other modules' stop hooks.
func Run(opts ...fx.Option) {
	os.Exit(run(opts...))
}

func run(opts ...fx.Option) int {
	// The config, the identity and the logger come first, outside the app:
	// an invalid MARTY_LOG_LEVEL fails with its own error, and Fx's logger
	// cannot fail to build, whatever else is wrong with the graph.
	b, err := bootstrap()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	core, log := b.core, b.log
	defer func() { _ = log.Sync() }()
	all := append(append([]fx.Option{}, Modules...), opts...)
	all = append(all,
		fx.Replace(b.src, b.info, log),
		// run reports failures itself, once, root cause first.
		fx.WithLogger(func() fxevent.Logger { return fxcore.NewFxDebugLogger(log) }),
		fx.StartTimeout(core.StartTimeout),
		fx.StopTimeout(core.StopTimeout),
	)
	var stopping *fxcore.Stopping
	all = append(all, fx.Populate(&stopping))
	app := fx.New(all...)
	if err := app.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "martyfx: build app:", fxcore.DescribeError(err))
		return 1
	}

	startCtx, cancel := context.WithTimeout(context.Background(), core.StartTimeout)
	defer cancel()
	// The pod is ready once every start hook ran, not only the servers'
	// (a consumer's or a user's hook after them): readiness waits for this.
	started := stopping.ExpectStart()
	if err := app.Start(startCtx); err != nil {
		fmt.Fprintln(os.Stderr, "martyfx: start:", fxcore.DescribeError(err))
		stopCtx, cancel := context.WithTimeout(context.Background(), core.StopTimeout)
		defer cancel()
		_ = app.Stop(stopCtx)
		return 1
	}

	// Wait installs the signal handlers: before the "started" line, so that
	// a SIGTERM sent as soon as it appears stops the app gracefully instead
	// of killing the process.
	done := app.Wait()
	started()
	log.Info("martyfx: started; stop with SIGINT or SIGTERM")
	sig := <-done
	log.Info("martyfx: stopping", zap.String("signal", sig.Signal.String()), zap.Int("exit_code", sig.ExitCode))
	stopCtx, cancelStop := context.WithTimeout(context.Background(), core.StopTimeout)
	defer cancelStop()
	// The servers' stop sequence runs before any stop hook, so that they
	// drain while the modules their handlers use (database, event bus)
	// still work: readiness off everywhere, one drain delay, the public
	// HTTP server, gRPC, the admin server last. Its errors are the servers'
	// stop hooks' errors, which app.Stop returns.
	_ = stopping.Stop(stopCtx)
	if err := app.Stop(stopCtx); err != nil {
		fmt.Fprintln(os.Stderr, "martyfx: stop:", fxcore.DescribeError(err))
		if errors.Is(err, context.DeadlineExceeded) || sig.ExitCode == 0 {
			return 1
		}
	}
	return sig.ExitCode
}

// boot is what run sets up before the app: the config Source, the core
// config, the service's identity and its logger.
type boot struct {
	src  *fxcore.Source
	core fxcore.Config
	info fxcore.ServiceInfo
	log  *zap.Logger
}

// bootstrap loads what the app's logger needs (the core, service and log
// config sections) and builds the logger the app will use.
func bootstrap() (b boot, err error) {
	if b.src, err = fxcore.NewSource(); err != nil {
		return b, err
	}
	if b.core, err = fxcore.Load(b.src, "", fxcore.DefaultConfig()); err != nil {
		return b, err
	}
	svc, err := fxcore.Load(b.src, "service", fxcore.ServiceConfig{})
	if err != nil {
		return b, err
	}
	logCfg, err := fxcore.Load(b.src, "log", fxcore.DefaultLogConfig())
	if err != nil {
		return b, err
	}
	b.info = fxcore.NewServiceInfo(b.src, b.core, svc)
	b.log, err = fxcore.NewLogger(logCfg, b.info)
	return b, err
}
