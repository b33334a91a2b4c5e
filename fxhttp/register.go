package fxhttp

import (
	"fmt"
	"net/http"
	"reflect"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
)

// Value groups behind the AsXxx helpers.
const (
	routesGroup      = "martyfx.http.routes"
	adminRoutesGroup = "martyfx.http.admin_routes"
	middlewareGroup  = "martyfx.http.middleware"
	errorStatusGroup = "martyfx.http.error_status"
)

// Route is a handler for a Go 1.22 ServeMux pattern ("GET /v1/orders/{id}").
type Route struct {
	Pattern string
	Handler http.Handler
	// Open is for admin routes that are read-only and show no payload or
	// configuration (probes, /metrics): they are served without the admin
	// token, in production too, so kubelet and Prometheus need no
	// credentials. Every other admin route is protected: it needs
	// Config.AdminToken when one is set, and in production it is not served
	// at all without one. AsAdminRoute sets Open with the Open option; on
	// public routes it means nothing.
	Open bool
}

// Middleware wraps the public server's handlers at an explicit Order
// (AsMiddleware; the package doc shows the whole chain).
type Middleware struct {
	// Name names the middleware in errors.
	Name string
	// Order places it: ascending, lower is outer (runs first). Order < 0
	// runs inside recovery, tracing, metrics and logging but before the
	// routing checks, for every request (404s included); Order >= 0 runs
	// after routing, around the matched route's handler.
	Order int
	// Wrap returns the handler that runs the middleware, then next.
	Wrap func(next http.Handler) http.Handler
}

// AsRoute registers a route on the public server. ctor returns an
// http.Handler (its parameters are injected by Fx), or is an http.Handler.
func AsRoute(pattern string, ctor any) fx.Option {
	return asRoute(routesGroup, "fxhttp.AsRoute", pattern, ctor, false)
}

// AsRoutes registers several routes on the public server at once: ctor
// returns a []Route (and optionally an error); its parameters are injected
// by Fx. An empty slice registers nothing, so a module can mount routes
// only when it has something to serve (fxgrpc mounts its REST gateway this
// way).
func AsRoutes(ctor any) fx.Option {
	ft := reflect.TypeOf(ctor)
	routes := reflect.TypeOf([]Route(nil))
	if ft == nil || ft.Kind() != reflect.Func || ft.IsVariadic() || ft.NumOut() < 1 || ft.NumOut() > 2 ||
		ft.Out(0) != routes || (ft.NumOut() == 2 && ft.Out(1) != reflect.TypeOf((*error)(nil)).Elem()) {
		return fx.Error(fmt.Errorf("fxhttp.AsRoutes: got %T, want a constructor returning []fxhttp.Route (and optionally an error)", ctor))
	}
	return fx.Provide(fx.Annotate(ctor, fx.ResultTags(`group:"`+routesGroup+`,flatten"`)))
}

// AsAdminRoute registers a route on the admin server (probes, metrics,
// diagnostics). ctor is as for AsRoute.
//
// Admin routes are protected unless registered with Open(): with
// MARTY_HTTP_ADMIN_TOKEN set they need the token; without it they are
// served open outside production, and not served at all in production
// (MARTY_ENV=production), where start logs a warning naming them. Mark a
// route Open only when it is read-only and reveals no payload, no
// configuration and no internal detail:
//
//	fxhttp.AsAdminRoute("GET /livez", newLiveness, fxhttp.Open())
//	fxhttp.AsAdminRoute("POST /events/dead/{id}/retry", newRetry) // protected
func AsAdminRoute(pattern string, ctor any, opts ...AdminRouteOption) fx.Option {
	var o adminRouteOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return asRoute(adminRoutesGroup, "fxhttp.AsAdminRoute", pattern, ctor, o.open)
}

// AdminRouteOption configures an admin route (AsAdminRoute).
type AdminRouteOption func(*adminRouteOptions)

type adminRouteOptions struct{ open bool }

// Open serves the admin route without the admin token, in production too
// (Route.Open). For probes and metrics: read-only, no payloads.
func Open() AdminRouteOption { return func(o *adminRouteOptions) { o.open = true } }

func asRoute(group, helper, pattern string, ctor any, open bool) fx.Option {
	what := fmt.Sprintf("%s(%q)", helper, pattern)
	return fxcore.Group(group, what, ctor, func(v any) (Route, error) {
		h, ok := v.(http.Handler)
		if !ok || h == nil {
			return Route{}, fmt.Errorf("got %T, want an http.Handler", v)
		}
		return Route{Pattern: pattern, Handler: h, Open: open}, nil
	})
}

// AsMiddleware registers user middleware on the public server at an
// explicit order (Middleware.Order): ascending, lower is outer. order < 0
// runs inside the built-in recovery, tracing, metrics and access log (a
// panic in it is a 500, it sees the request's span) but before routing, so
// it sees every request, 404s included; order >= 0 runs after routing,
// around the matched route's handler (Request.Pattern is set). Equal orders
// run in an undefined order, so give each its own. ctor returns a
// func(http.Handler) http.Handler or a Middleware (its parameters are
// injected by Fx), or is one.
func AsMiddleware(ctor any, order int) fx.Option {
	what := fmt.Sprintf("fxhttp.AsMiddleware(order %d)", order)
	return fxcore.Group(middlewareGroup, what, ctor, func(v any) (Middleware, error) {
		switch m := v.(type) {
		case func(http.Handler) http.Handler:
			return Middleware{Name: fmt.Sprintf("%T", ctor), Order: order, Wrap: m}, nil
		case Middleware:
			m.Order = order
			return m, nil
		default:
			return Middleware{}, fmt.Errorf("got %T, want func(http.Handler) http.Handler", v)
		}
	})
}

// AsErrorStatus registers a mapping from errors to HTTP statuses used by
// WriteError, for errors that have no fxcore class (a class is mapped by
// ClassStatus; modules classify errors with fxcore.AsClassifier). ctor returns an ErrorStatus or a func(error) (int, bool) (its
// parameters are injected by Fx), or is one. Mappers are consulted after the
// error's own HTTPStatus() method, first match wins.
func AsErrorStatus(ctor any) fx.Option {
	return fxcore.Group(errorStatusGroup, "fxhttp.AsErrorStatus", ctor, func(v any) (ErrorStatus, error) {
		switch f := v.(type) {
		case ErrorStatus:
			if f != nil {
				return f, nil
			}
		case func(error) (int, bool):
			if f != nil {
				return ErrorStatus(f), nil
			}
		}
		return nil, fmt.Errorf("got %T, want an fxhttp.ErrorStatus (func(error) (int, bool))", v)
	})
}
