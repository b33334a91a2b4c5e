package fxevents

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
)

// Value groups behind the AsXxx helpers.
const (
	handlersGroup   = "martyfx.events.handlers"
	middlewareGroup = "martyfx.events.middleware"
)

// AsHandler registers an event handler. ctor returns a Handler (its
// parameters are injected by Fx), or is a Handler.
func AsHandler(ctor any) fx.Option {
	return fxcore.Group(handlersGroup, "fxevents.AsHandler", ctor, func(v any) (Handler, error) {
		h, ok := v.(Handler)
		if !ok || h == nil {
			return nil, fmt.Errorf("got %T, want an fxevents.Handler", v)
		}
		if h.Name() == "" || len(h.EventTypes()) == 0 {
			return nil, fmt.Errorf("handler %T needs a Name and at least one event type", h)
		}
		return h, nil
	})
}

// AsHandlerMiddleware registers middleware around every handler at an
// explicit Order: ascending, lower is outer (see HandlerMiddleware for the
// whole chain); give each its own. ctor returns a
// func(fxevents.Handler) fxevents.Handler or a HandlerMiddleware (whose
// Order is replaced by order), or is one.
func AsHandlerMiddleware(ctor any, order int) fx.Option {
	what := fmt.Sprintf("fxevents.AsHandlerMiddleware(order %d)", order)
	return fxcore.Group(middlewareGroup, what, ctor, func(v any) (HandlerMiddleware, error) {
		switch m := v.(type) {
		case func(Handler) Handler:
			return HandlerMiddleware{Name: fmt.Sprintf("%T", ctor), Order: order, Wrap: m}, nil
		case HandlerMiddleware:
			if m.Wrap == nil {
				return HandlerMiddleware{}, fmt.Errorf("middleware %q has a nil Wrap", m.Name)
			}
			m.Order = order
			return m, nil
		default:
			return HandlerMiddleware{}, fmt.Errorf("got %T, want func(fxevents.Handler) fxevents.Handler", v)
		}
	})
}
