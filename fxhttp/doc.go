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
// Admin routes are protected unless registered with Open() (probes,
// /metrics: read-only, no payloads): with MARTY_HTTP_ADMIN_TOKEN set they
// need "Authorization: Bearer <token>"; without it they are not served in
// production (MARTY_ENV=production), and served open elsewhere. Open routes
// never need the token.
//
// Every request goes through a built-in stack, outermost first: panic
// recovery (500 problem+json, stack logged, the server lives on), request id
// (X-Request-Id accepted or generated, echoed, logged and put on the span),
// tracing (a server span named "METHOD /route/{pattern}" with the
// OpenTelemetry HTTP semantic-convention attributes; probe and metrics paths
// are not traced), Prometheus RED metrics labelled by route pattern (never the
// raw path), an access log line and a request body size limit (413, for a
// declared length and a chunked body alike, whatever the handler answers). User
// middleware registered with AsMiddleware runs outside that stack (order < 0)
// or inside it, per route (order >= 0).
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
package fxhttp
