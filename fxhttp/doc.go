// Package fxhttp runs the service's public HTTP server and its admin server
// (probes, metrics, diagnostics) under Fx's lifecycle.
//
// Routes are Go 1.22 ServeMux patterns registered through value groups:
//
//	fx.New(
//		fxcore.Module, fxhttp.Module,
//		fxhttp.AsRoute("GET /v1/orders/{id}", orders.NewGetHandler),
//		fxhttp.AsAdminRoute("GET /debug/info", diag.NewInfoHandler),
//	)
//
// Conflicting, duplicate and invalid patterns fail the start with an error
// naming the routes. AsRoutes registers a list of routes at once (another
// module mounting routes only when it has some, as fxgrpc's gateway does).
//
// Admin routes are protected unless registered with Open() (probes,
// /metrics: read-only, no payloads): with MARTY_HTTP_ADMIN_TOKEN set they
// need "Authorization: Bearer <token>"; without it they are not served in
// production (MARTY_ENV=production), and served open elsewhere. Open routes
// never need the token.
//
// # The chain of a request
//
// Outermost first, on the public server:
//
//  1. recovery: a panic is a 500 problem+json, its stack logged, the
//     server lives on;
//  2. request id: X-Request-Id accepted or generated, echoed, logged and put
//     on the span (RequestID);
//  3. tracing: a server span named "METHOD /route/{pattern}" with the
//     OpenTelemetry HTTP semantic-convention attributes (probe and metrics
//     paths are not traced);
//  4. metrics: Prometheus RED metrics labelled by route pattern, never the
//     raw path;
//  5. access log: one line per request;
//  6. body limit: 413 for a body past MARTY_HTTP_MAX_BODY_BYTES, declared
//     or streamed, whatever the handler answers;
//  7. middleware with Order < 0 (AsMiddleware), ascending: every request
//     meets it, 404s included, with its span and request id;
//  8. routing: the ServeMux answers 404 and 405 itself; on admin routes,
//     the cross-origin check and the admin token;
//  9. middleware with Order >= 0, ascending, around the matched route's
//     handler (Request.Pattern and PathValue are set);
//  10. the handler.
//
// Ascending Order, lower is outer: the same rule as fxgrpc's interceptors.
// The admin server has steps 1 to 6, 8 and 10; user middleware is the
// public server's (when the admin routes share the public server, its
// negative orders see their requests too). A handler that routes by itself
// (a mounted sub-router) names the route it matched with SetRoute.
//
// DecodeJSON, WriteJSON, WriteProblem and WriteError are the small helpers a
// JSON API needs; WriteError maps errors to statuses through errors that
// have an HTTPStatus() int method, the hooks registered with AsErrorStatus,
// and the errors' fxcore classes (ClassStatus: 400, 404, 409, 503 with
// Retry-After ...); an unclassified 5xx says "internal error (ref <request
// id>)". NewClient returns an instrumented *http.Client.
//
// Listening happens in OnStart, so a port in use fails Start with the address.
// The servers stop as stages of the app's stop sequence (fxcore.Stopping):
// readiness goes NOT_SERVING everywhere at once, the largest drain delay
// configured across servers is waited once (the public server answers
// "Connection: close" meanwhile), then the public server shuts down
// gracefully while the gRPC server still serves its gateway, then gRPC, and
// the admin server last, each within the stop deadline.
//
// # Without Fx
//
// NewServer takes the Config (validated there, with the error the Fx path
// gives) and a ServerOptions whose fields are all optional; Start listens
// and Stop drains:
//
//	cfg := fxhttp.DefaultConfig()
//	srv, err := fxhttp.NewServer(cfg, fxhttp.ServerOptions{
//		Logger: log,
//		Routes: []fxhttp.Route{{Pattern: "GET /hello", Handler: hello}},
//	})
//	if err != nil {
//		return err
//	}
//	if err := srv.Start(ctx); err != nil {
//		return err
//	}
//	defer srv.Stop(context.Background())
package fxhttp
