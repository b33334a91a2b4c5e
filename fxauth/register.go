package fxauth

import (
	"fmt"

	"go.uber.org/fx"
)

// rulesGroup is the value group behind AsRule.
const rulesGroup = "martyfx.auth.rules"

// AsRule declares the access a gRPC method or service, or an HTTP route,
// requires, next to where it is registered:
//
//	fxgrpc.AsService(&ordersv1.Orders_ServiceDesc, orders.NewServer),
//	fxauth.AsRule("/orders.v1.Orders/*", fxauth.Authenticated()),
//	fxauth.AsRule("/orders.v1.Orders/CreateOrder", fxauth.Scopes("orders.write")),
//	fxhttp.AsRoute("GET /v1/status", newStatus),
//	fxauth.AsRule("GET /v1/status", fxauth.Public()),
//
// Once authentication is on, a method or route without a rule is refused
// (PERMISSION_DENIED / 403) and start logs a warning naming it. A method's
// own rule wins over its service's; MARTY_AUTH_RULES overrides both.
func AsRule(target string, access Access) fx.Option {
	if err := checkTarget(target); err != nil {
		return fx.Error(fmt.Errorf("fxauth.AsRule: %w", err))
	}
	if access.kind == accessDenied {
		return fx.Error(fmt.Errorf("fxauth.AsRule(%q): no access given (use fxauth.Public, Authenticated, Scopes or Roles)", target))
	}
	rule := Rule{Target: target, Access: access}
	return fx.Supply(fx.Annotate(rule, fx.ResultTags(`group:"`+rulesGroup+`"`)))
}
