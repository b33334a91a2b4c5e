// Package fxgrpc is martyfx's gRPC module: a production gRPC server built
// from AsService registrations, with grpc-go's health service driven by
// readiness, reflection, OpenTelemetry tracing, Prometheus metrics, cheap
// call logging, error mapping (fxcore error classes to codes, "internal
// error (ref <id>)" for the rest), panic recovery, request validation and an
// optional auth hook; a grpc-gateway REST mount (AsGateway) on fxhttp's public server; and
// instrumented clients (NewClient, *Clients) with a default deadline,
// retries of UNAVAILABLE, round-robin balancing and circuit breakers.
//
//	fx.New(
//		fxcore.Module, fxhttp.Module, fxmonitor.Module, fxgrpc.Module,
//		fxgrpc.AsService(&pb.Orders_ServiceDesc, orders.NewServer),
//		fxgrpc.AsGateway(pb.RegisterOrdersHandler),
//	).Run()
//
// The server listens in OnStart on MARTY_GRPC_ADDR (default :50051), and
// only when it hosts a service: without an AsService registration it opens
// no port (Addr is "", a debug line says so). It stops as a stage of the
// app's stop sequence (fxcore.Stopping): health turns NOT_SERVING with
// every server's readiness, the largest drain delay configured across
// servers is waited once, the public HTTP server and the gateway drain
// while this server still serves them, then it stops gracefully within the
// stop deadline, after which calls still running are cut off; the admin
// server stops last.
//
// # The chain of a call
//
// Outermost first, for unary and stream calls alike:
//
//  1. tracing: the call's server span;
//  2. metrics: grpc_server_* (go-grpc-middleware's series);
//  3. logging: one line per finished call, level by code;
//  4. error mapping: the handler's error becomes the status the client gets;
//  5. recovery: a panic becomes INTERNAL, its stack logged;
//  6. interceptors with Order < 0 (AsUnaryInterceptor, AsStreamInterceptor),
//     ascending: every call meets them, traced, counted and recovered;
//  7. authentication: the AuthFunc, when one is in the graph (not for
//     health and reflection);
//  8. validation: Validate()/ValidateAll(), or else the MessageValidator in
//     the graph (fxgrpc/bufvalidate: buf.validate rules), failing with
//     INVALID_ARGUMENT;
//  9. interceptors with Order >= 0, ascending, around the handler: only
//     authenticated, valid calls reach them;
//  10. the handler.
//
// Ascending Order, lower is outer: the same rule as fxhttp's middleware.
// For unary calls 1 to 5 (and 8, when nothing sits between) are one
// interceptor, and a server that hosts a service serves calls on grpc-go's
// stream workers from Start on (GRPC() then returns the serving server).
// Calls through the REST gateway take the same chain (the gateway calls
// this server), and their HTTP metrics, span and access log name the
// gateway's route ("/v1/orders/{id}"), not its mount point.
//
// # Without Fx
//
// NewServer and NewClients take the Config (validated there, with the
// error the Fx path gives) and an options struct whose fields are all
// optional; Start listens and Stop stops:
//
//	srv, err := fxgrpc.NewServer(fxgrpc.DefaultConfig(), fxgrpc.ServerOptions{
//		Logger:   log,
//		Services: []fxgrpc.Service{{Desc: &pb.Orders_ServiceDesc, Impl: orders}},
//	})
//	if err != nil {
//		return err
//	}
//	if err := srv.Start(ctx); err != nil {
//		return err
//	}
//	defer srv.Stop(context.Background())
//
// NewClient(target, opts...) makes one instrumented connection; its TLS is
// an fxcore.TLS (WithTLS), the type of every martyfx TLS setting.
package fxgrpc
