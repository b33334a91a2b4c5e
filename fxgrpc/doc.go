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
// The server listens in OnStart on MARTY_GRPC_ADDR (default :50051). It
// stops as a stage of the app's stop sequence (fxcore.Stopping): health turns
// NOT_SERVING with every server's readiness, the largest drain delay
// configured across servers is waited once, the public HTTP server and the
// gateway drain while this server still serves them, then it stops
// gracefully within the stop deadline, after which calls still running are
// cut off; the admin server stops last.
package fxgrpc
