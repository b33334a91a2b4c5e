package saga

import (
	"fmt"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// Value groups behind the AsXxx helpers.
const (
	sagasGroup     = "martyfx.saga.sagas"
	upcastersGroup = "martyfx.saga.upcasters"
)

// registration is one AsSaga: the saga and the token its event handler
// finds it by.
type registration struct {
	tok  *byte
	saga Saga
}

// AsSaga registers a saga: ctor returns a Saga (a *Definition[S]; its
// parameters are injected by Fx, so steps can use the app's repositories),
// or is one. Its event handler "saga.<name>" is registered with fxevents.
// The app needs fxrepo.Module and MARTY_EVENTS_BUS=outbox.
func AsSaga(ctor any) fx.Option {
	tok := new(byte)
	return fx.Options(
		fxcore.Group(sagasGroup, "saga.AsSaga", ctor, func(v any) (registration, error) {
			s, ok := v.(Saga)
			if !ok || s == nil {
				return registration{}, fmt.Errorf("got %T, want a saga.Saga (a *saga.Definition[S])", v)
			}
			return registration{tok: tok, saga: s}, nil
		}),
		fxevents.AsHandler(func(r *Runtime) (fxevents.Handler, error) {
			name, ok := r.tokens[tok]
			if !ok {
				return nil, fmt.Errorf("saga: the saga registered with this AsSaga is not in the runtime")
			}
			return r.handlerFor(name)
		}),
	)
}

// AsUpcaster registers upcasters of the events sagas read: a payload
// written at an older version of its event type is brought up to date
// before a step decodes it (fxevents.UpcastMiddleware does the same for
// other handlers).
func AsUpcaster(ups ...fxevents.Upcaster) fx.Option {
	opts := make([]fx.Option, 0, len(ups))
	for _, u := range ups {
		what := fmt.Sprintf("saga.AsUpcaster(%s from %d)", u.Type, u.From)
		opts = append(opts, fxcore.Group(upcastersGroup, what, u, func(v any) (fxevents.Upcaster, error) {
			up, ok := v.(fxevents.Upcaster)
			if !ok {
				return fxevents.Upcaster{}, fmt.Errorf("got %T, want an fxevents.Upcaster", v)
			}
			return up, nil
		}))
	}
	return fx.Options(opts...)
}
