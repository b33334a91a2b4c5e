package fxevents

import (
	"context"
	"errors"
	"fmt"
	"reflect"
)

// Handler consumes events. Name is unique in the app: it names the handler's
// queue, metrics, dead letters, inbox rows and (with a transport) its durable
// consumer. EventTypes lists the event types it receives.
type Handler interface {
	Name() string
	EventTypes() []string
	Handle(ctx context.Context, env Envelope) error
}

// Typed is implemented by handlers that know the Go types of their events
// (HandlerFunc): the Module registers them in the Registry.
type Typed interface {
	Prototypes() []Event
}

// HandlerFunc returns a Handler named name for events of type T: it decodes
// each envelope into a T (with the dispatcher's codec, see CodecFrom) and
// calls fn. T may be a struct or a pointer to one.
func HandlerFunc[T Event](name string, fn func(context.Context, T) error) Handler {
	var zero T
	t := reflect.TypeOf(&zero).Elem()
	h := &typedHandler[T]{name: name, fn: fn}
	if t.Kind() == reflect.Pointer {
		elem := t.Elem()
		h.newT = func() T { return reflect.New(elem).Interface().(T) }
		h.ptr = true
	}
	h.proto = h.zero()
	h.types = []string{h.proto.EventType()}
	return h
}

type typedHandler[T Event] struct {
	name  string
	fn    func(context.Context, T) error
	newT  func() T
	ptr   bool
	proto T
	types []string
}

func (h *typedHandler[T]) zero() T {
	if h.ptr {
		return h.newT()
	}
	var z T
	return z
}

func (h *typedHandler[T]) Name() string         { return h.name }
func (h *typedHandler[T]) EventTypes() []string { return h.types }
func (h *typedHandler[T]) Prototypes() []Event  { return []Event{h.proto} }

func (h *typedHandler[T]) Handle(ctx context.Context, env Envelope) error {
	codec := CodecFrom(ctx)
	if h.ptr {
		v := h.newT()
		if err := codec.Decode(env.ContentType(), env.Payload, v); err != nil {
			return Permanent(fmt.Errorf("decode %s into %T: %w", env.Type, v, err))
		}
		return h.fn(ctx, v)
	}
	var v T
	if err := codec.Decode(env.ContentType(), env.Payload, &v); err != nil {
		return Permanent(fmt.Errorf("decode %s into %T: %w", env.Type, v, err))
	}
	return h.fn(ctx, v)
}

// HandlerMiddleware wraps every handler: Wrap receives a handler and returns
// one that runs around it, once per attempt.
//
// Order places it, with the meaning it has in every martyfx module:
// ascending, the lowest Order outermost (it runs first). Each attempt runs
//
//	span "process <type>" → metrics → handler timeout → panic recovery
//	  → middleware, ascending Order → the handler (→ Idempotent's inbox → decoding)
//
// so every middleware is traced, timed, bounded and recovered. A negative
// Order comes before the dispatcher's built-in checks and a non-negative one
// after them, around the handler; the dispatcher has no built-in check
// between recovery and the handler today (the inbox of Idempotent and the
// decoding belong to the handler), so the sign only orders middleware among
// themselves. Equal Orders keep their registration order, which Fx does not
// promise: give each middleware its own Order.
type HandlerMiddleware struct {
	// Name names it in errors.
	Name string
	// Order places it: ascending, lower is outer.
	Order int
	// Wrap returns the handler that runs around the given one.
	Wrap func(Handler) Handler
}

// WrapHandler returns a Handler with h's name and event types whose Handle
// is fn: a helper for writing middleware.
func WrapHandler(h Handler, fn func(ctx context.Context, env Envelope) error) Handler {
	return wrapped{Handler: h, fn: fn}
}

type wrapped struct {
	Handler
	fn func(ctx context.Context, env Envelope) error
}

func (w wrapped) Handle(ctx context.Context, env Envelope) error { return w.fn(ctx, env) }

// Unwrap returns the handler under the middleware.
func (w wrapped) Unwrap() Handler { return w.Handler }

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying: the dispatcher dead-letters the
// event at once. Decoding failures are permanent.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
