// Hand-written in the shape protoc-gen-go-grpc generates for echo.proto's
// service (see gen.go).

package testpb

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Full method names of the Echo service.
const (
	Echo_Echo_FullMethodName       = "/martyfx.fxgrpc.testpb.Echo/Echo"
	Echo_EchoStream_FullMethodName = "/martyfx.fxgrpc.testpb.Echo/EchoStream"
	Echo_Collect_FullMethodName    = "/martyfx.fxgrpc.testpb.Echo/Collect"
	Echo_Check_FullMethodName      = "/martyfx.fxgrpc.testpb.Echo/Check"
)

// EchoClient is the client API for the Echo service.
type EchoClient interface {
	Echo(ctx context.Context, in *EchoRequest, opts ...grpc.CallOption) (*EchoResponse, error)
	EchoStream(ctx context.Context, in *EchoRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[EchoResponse], error)
	Collect(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStreamingClient[EchoRequest, EchoResponse], error)
	Check(ctx context.Context, in *CheckRequest, opts ...grpc.CallOption) (*EchoResponse, error)
}

type echoClient struct{ cc grpc.ClientConnInterface }

// NewEchoClient returns a client of the Echo service.
func NewEchoClient(cc grpc.ClientConnInterface) EchoClient { return &echoClient{cc} }

func (c *echoClient) Echo(ctx context.Context, in *EchoRequest, opts ...grpc.CallOption) (*EchoResponse, error) {
	out := new(EchoResponse)
	if err := c.cc.Invoke(ctx, Echo_Echo_FullMethodName, in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *echoClient) Check(ctx context.Context, in *CheckRequest, opts ...grpc.CallOption) (*EchoResponse, error) {
	out := new(EchoResponse)
	if err := c.cc.Invoke(ctx, Echo_Check_FullMethodName, in, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *echoClient) EchoStream(ctx context.Context, in *EchoRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[EchoResponse], error) {
	stream, err := c.cc.NewStream(ctx, &Echo_ServiceDesc.Streams[0], Echo_EchoStream_FullMethodName, opts...)
	if err != nil {
		return nil, err
	}
	x := &grpc.GenericClientStream[EchoRequest, EchoResponse]{ClientStream: stream}
	if err := x.ClientStream.SendMsg(in); err != nil {
		return nil, err
	}
	if err := x.ClientStream.CloseSend(); err != nil {
		return nil, err
	}
	return x, nil
}

func (c *echoClient) Collect(ctx context.Context, opts ...grpc.CallOption) (grpc.ClientStreamingClient[EchoRequest, EchoResponse], error) {
	stream, err := c.cc.NewStream(ctx, &Echo_ServiceDesc.Streams[1], Echo_Collect_FullMethodName, opts...)
	if err != nil {
		return nil, err
	}
	return &grpc.GenericClientStream[EchoRequest, EchoResponse]{ClientStream: stream}, nil
}

// EchoServer is the server API for the Echo service.
type EchoServer interface {
	Echo(context.Context, *EchoRequest) (*EchoResponse, error)
	EchoStream(*EchoRequest, grpc.ServerStreamingServer[EchoResponse]) error
	Collect(grpc.ClientStreamingServer[EchoRequest, EchoResponse]) error
	Check(context.Context, *CheckRequest) (*EchoResponse, error)
	mustEmbedUnimplementedEchoServer()
}

// UnimplementedEchoServer must be embedded by implementations.
type UnimplementedEchoServer struct{}

func (UnimplementedEchoServer) Echo(context.Context, *EchoRequest) (*EchoResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method Echo not implemented")
}
func (UnimplementedEchoServer) EchoStream(*EchoRequest, grpc.ServerStreamingServer[EchoResponse]) error {
	return status.Error(codes.Unimplemented, "method EchoStream not implemented")
}
func (UnimplementedEchoServer) Collect(grpc.ClientStreamingServer[EchoRequest, EchoResponse]) error {
	return status.Error(codes.Unimplemented, "method Collect not implemented")
}
func (UnimplementedEchoServer) Check(context.Context, *CheckRequest) (*EchoResponse, error) {
	return nil, status.Error(codes.Unimplemented, "method Check not implemented")
}
func (UnimplementedEchoServer) mustEmbedUnimplementedEchoServer() {}

func _Echo_Echo_Handler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(EchoRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(EchoServer).Echo(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: Echo_Echo_FullMethodName}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(EchoServer).Echo(ctx, req.(*EchoRequest))
	}
	return interceptor(ctx, in, info, handler)
}

func _Echo_Check_Handler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(CheckRequest)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(EchoServer).Check(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: Echo_Check_FullMethodName}
	handler := func(ctx context.Context, req any) (any, error) {
		return srv.(EchoServer).Check(ctx, req.(*CheckRequest))
	}
	return interceptor(ctx, in, info, handler)
}

func _Echo_EchoStream_Handler(srv any, stream grpc.ServerStream) error {
	m := new(EchoRequest)
	if err := stream.RecvMsg(m); err != nil {
		return err
	}
	return srv.(EchoServer).EchoStream(m, &grpc.GenericServerStream[EchoRequest, EchoResponse]{ServerStream: stream})
}

func _Echo_Collect_Handler(srv any, stream grpc.ServerStream) error {
	return srv.(EchoServer).Collect(&grpc.GenericServerStream[EchoRequest, EchoResponse]{ServerStream: stream})
}

// Echo_ServiceDesc is the grpc.ServiceDesc for the Echo service.
var Echo_ServiceDesc = grpc.ServiceDesc{
	ServiceName: "martyfx.fxgrpc.testpb.Echo",
	HandlerType: (*EchoServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Echo", Handler: _Echo_Echo_Handler},
		{MethodName: "Check", Handler: _Echo_Check_Handler},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "EchoStream", Handler: _Echo_EchoStream_Handler, ServerStreams: true},
		{StreamName: "Collect", Handler: _Echo_Collect_Handler, ClientStreams: true},
	},
	Metadata: "echo.proto",
}
