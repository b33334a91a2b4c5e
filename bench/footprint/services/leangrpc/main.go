// Command leangrpc is a lean gRPC service without a database: fxcore,
// fxtracing, fxhttp (admin server for probes and metrics), fxmonitor and
// fxgrpc with one hand-written service (no generated code of its own).
package main

import (
	"context"
	"fmt"
	"os"

	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxtracing"
)

// Pinger is the handler type of bench.Pinger/Ping.
type Pinger interface {
	Ping(context.Context, *emptypb.Empty) (*emptypb.Empty, error)
}

type pinger struct{}

func (pinger) Ping(_ context.Context, in *emptypb.Empty) (*emptypb.Empty, error) { return in, nil }

var pingerDesc = grpc.ServiceDesc{
	ServiceName: "bench.Pinger",
	HandlerType: (*Pinger)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(Pinger).Ping(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/bench.Pinger/Ping"}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(Pinger).Ping(ctx, req.(*emptypb.Empty))
			})
		},
	}},
}

func main() {
	app := fx.New(
		fxcore.Module,
		fxtracing.Module,
		fxhttp.Module,
		fxmonitor.Module,
		fxgrpc.Module,
		fx.WithLogger(fxcore.NewFxLogger),
		fxgrpc.AsService(&pingerDesc, func() Pinger { return pinger{} }),
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
