package fxgrpc

import (
	"context"
	"fmt"
	"reflect"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.uber.org/fx"
	"google.golang.org/grpc"

	"github.com/martyfx/martyfx/fxcore"
)

// Value groups behind the AsXxx helpers.
const (
	servicesGroup = "martyfx.grpc.services"
	unaryGroup    = "martyfx.grpc.unary_interceptors"
	streamGroup   = "martyfx.grpc.stream_interceptors"
	gatewaysGroup = "martyfx.grpc.gateways"
)

// Service is one gRPC service hosted by the Server: its descriptor and the
// implementation, checked against Desc.HandlerType.
type Service struct {
	Desc *grpc.ServiceDesc
	Impl any
}

// AsService registers a service implementation on the gRPC server. desc is
// the generated descriptor (&pb.Orders_ServiceDesc); ctor is the
// implementation or a constructor of it whose parameters Fx injects. An
// implementation that does not satisfy desc.HandlerType fails the app's
// start with an error naming both types.
func AsService(desc *grpc.ServiceDesc, ctor any) fx.Option {
	if desc == nil {
		return fx.Error(fmt.Errorf("fxgrpc.AsService: nil *grpc.ServiceDesc"))
	}
	what := fmt.Sprintf("fxgrpc.AsService(%s)", desc.ServiceName)
	return fxcore.Group(servicesGroup, what, ctor, func(v any) (Service, error) {
		if err := checkImpl(desc, v); err != nil {
			return Service{}, err
		}
		return Service{Desc: desc, Impl: v}, nil
	})
}

// checkImpl reports whether impl implements the service's handler interface.
func checkImpl(desc *grpc.ServiceDesc, impl any) error {
	if impl == nil {
		return fmt.Errorf("implementation of %s is nil", desc.ServiceName)
	}
	ht := reflect.TypeOf(desc.HandlerType)
	if ht == nil || ht.Kind() != reflect.Pointer || ht.Elem().Kind() != reflect.Interface {
		return fmt.Errorf("service %s: HandlerType %v is not a pointer to an interface", desc.ServiceName, ht)
	}
	it := reflect.TypeOf(impl)
	if !it.Implements(ht.Elem()) {
		return fmt.Errorf("%s does not implement %s (service %s)%s", it, ht.Elem(), desc.ServiceName, missing(it, ht.Elem()))
	}
	return nil
}

// missing says what to fix: the methods of iface that t has with the wrong
// type, else those it lacks.
func missing(t, iface reflect.Type) string {
	var wrong, absent []string
	for i := 0; i < iface.NumMethod(); i++ {
		m := iface.Method(i)
		if !m.IsExported() {
			continue
		}
		got, ok := t.MethodByName(m.Name)
		if !ok {
			absent = append(absent, m.Name)
			continue
		}
		if !reflect.FuncOf(inTypes(got.Type)[1:], outTypes(got.Type), false).AssignableTo(m.Type) {
			wrong = append(wrong, fmt.Sprintf("method %s has type %s, want %s", m.Name, got.Type, m.Type))
		}
	}
	switch {
	case len(wrong) > 0:
		return ": " + strings.Join(wrong, "; ")
	case len(absent) > 0:
		return ": missing method " + strings.Join(absent, ", ")
	}
	return ": embed the generated Unimplemented server struct"
}

func inTypes(t reflect.Type) []reflect.Type {
	out := make([]reflect.Type, t.NumIn())
	for i := range out {
		out[i] = t.In(i)
	}
	return out
}

func outTypes(t reflect.Type) []reflect.Type {
	out := make([]reflect.Type, t.NumOut())
	for i := range out {
		out[i] = t.Out(i)
	}
	return out
}

// UnaryInterceptor is a user unary interceptor at an explicit Order
// (AsUnaryInterceptor).
type UnaryInterceptor struct {
	// Order places it: ascending, lower is outer (runs first). Order < 0
	// runs inside tracing, metrics, logging, error mapping and recovery but
	// before authentication and validation; Order >= 0 after them, around
	// the handler.
	Order       int
	Interceptor grpc.UnaryServerInterceptor
}

// StreamInterceptor is a user stream interceptor at an explicit Order
// (AsStreamInterceptor), placed as UnaryInterceptor.Order says.
type StreamInterceptor struct {
	Order       int
	Interceptor grpc.StreamServerInterceptor
}

// AsUnaryInterceptor registers a unary server interceptor at an explicit
// order (UnaryInterceptor.Order): order < 0 runs before authentication and
// validation, but inside tracing, metrics, logging and recovery (a panic in
// it is recovered, it sees the call's span); order >= 0 after them, closest
// to the handler. Lower orders run first (outermost); give each
// interceptor its own order. ctor is a grpc.UnaryServerInterceptor or a
// constructor of one whose parameters Fx injects.
func AsUnaryInterceptor(ctor any, order int) fx.Option {
	what := fmt.Sprintf("fxgrpc.AsUnaryInterceptor(order %d)", order)
	return fxcore.Group(unaryGroup, what, ctor, func(v any) (UnaryInterceptor, error) {
		switch f := v.(type) {
		case grpc.UnaryServerInterceptor:
			return UnaryInterceptor{Order: order, Interceptor: f}, nil
		case func(context.Context, any, *grpc.UnaryServerInfo, grpc.UnaryHandler) (any, error):
			return UnaryInterceptor{Order: order, Interceptor: f}, nil
		}
		return UnaryInterceptor{}, fmt.Errorf("got %T, want a grpc.UnaryServerInterceptor", v)
	})
}

// AsStreamInterceptor registers a stream server interceptor at an explicit
// order, as AsUnaryInterceptor does for unary calls.
func AsStreamInterceptor(ctor any, order int) fx.Option {
	what := fmt.Sprintf("fxgrpc.AsStreamInterceptor(order %d)", order)
	return fxcore.Group(streamGroup, what, ctor, func(v any) (StreamInterceptor, error) {
		switch f := v.(type) {
		case grpc.StreamServerInterceptor:
			return StreamInterceptor{Order: order, Interceptor: f}, nil
		case func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error:
			return StreamInterceptor{Order: order, Interceptor: f}, nil
		}
		return StreamInterceptor{}, fmt.Errorf("got %T, want a grpc.StreamServerInterceptor", v)
	})
}

// GatewayRegister registers a service's REST handlers on a grpc-gateway mux,
// calling the gRPC server through conn: the generated pb.RegisterXHandler
// functions have this type.
type GatewayRegister func(ctx context.Context, mux *runtime.ServeMux, conn *grpc.ClientConn) error

// AsGateway exposes a service over REST (grpc-gateway v2) on fxhttp's public
// server at Config.GatewayPattern. The gateway calls the local gRPC server,
// so every interceptor applies. register is the generated
// pb.RegisterXHandler, or a constructor of a GatewayRegister.
func AsGateway(register any) fx.Option {
	return fxcore.Group(gatewaysGroup, "fxgrpc.AsGateway", register, func(v any) (GatewayRegister, error) {
		switch f := v.(type) {
		case GatewayRegister:
			return f, nil
		case func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error:
			return f, nil
		}
		return nil, fmt.Errorf("got %T, want func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error", v)
	})
}

// AuthFunc authenticates a call: it returns the context the handler sees
// (e.g. carrying the principal) or an error, a status error or one answered
// as Unauthenticated. Provide one in the graph to enable it
// (fx.Provide(func() fxgrpc.AuthFunc {...})); it is skipped for the health
// and reflection services.
type AuthFunc func(ctx context.Context, fullMethod string) (context.Context, error)
