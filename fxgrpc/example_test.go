package fxgrpc_test

import (
	"context"
	"fmt"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

type greeter struct{ testpb.UnimplementedEchoServer }

func (greeter) Echo(_ context.Context, req *testpb.EchoRequest) (*testpb.EchoResponse, error) {
	return &testpb.EchoResponse{Message: "hello " + req.GetMessage()}, nil
}

// Without Fx: NewServer takes the Config and plain options; Start listens,
// Stop stops. NewClient dials with tracing, a deadline and retries.
func ExampleNewServer() {
	cfg := fxgrpc.DefaultConfig()
	cfg.Addr = "127.0.0.1:0" // a free port
	srv, err := fxgrpc.NewServer(cfg, fxgrpc.ServerOptions{
		Services: []fxgrpc.Service{{Desc: &testpb.Echo_ServiceDesc, Impl: greeter{}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := srv.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = srv.Stop(ctx) }()

	conn, err := fxgrpc.NewClient(srv.Addr())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = conn.Close() }() // the example is over; nothing is left to report
	res, err := testpb.NewEchoClient(conn).Echo(ctx, &testpb.EchoRequest{Message: "gopher"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.GetMessage())

	// A server without a service opens no port.
	idle, _ := fxgrpc.NewServer(cfg, fxgrpc.ServerOptions{})
	_ = idle.Start(ctx)
	fmt.Printf("idle server address: %q\n", idle.Addr())
	_ = idle.Stop(ctx)
	// Output:
	// hello gopher
	// idle server address: ""
}
