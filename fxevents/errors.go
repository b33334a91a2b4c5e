package fxevents

import "github.com/martyfx/martyfx/fxcore"

// The sentinel errors. Test for them with errors.Is. Those a request can
// meet (Publish inside a handler of an RPC or HTTP call) are classified
// (fxcore.Classified), so fxgrpc and fxhttp answer them with the right
// code and a message without internals: a full queue, a stopping bus and an
// unreachable broker are "unavailable" (503 / UNAVAILABLE with a retry
// delay), a publish outside a required transaction is a bug of the service
// ("internal error").
var (
	// ErrBufferFull is returned by Publish when a handler's queue is full
	// and Config.BackPressure is "fail".
	ErrBufferFull error = &sentinel{"fxevents: handler queue is full", fxcore.ClassUnavailable, "the service is busy; retry later"}

	// ErrClosed is returned by Publish once the bus has begun stopping.
	ErrClosed error = &sentinel{"fxevents: bus is stopped", fxcore.ClassUnavailable, "the service is stopping; retry later"}

	// ErrNoTransaction is returned by the outbox's Publish when
	// MARTY_EVENTS_REQUIRE_TX is true and the context has no unit-of-work
	// transaction.
	ErrNoTransaction error = &sentinel{"fxevents: publish outside a transaction (MARTY_EVENTS_REQUIRE_TX=true): call it inside fxrepo.UnitOfWork.Do",
		fxcore.ClassInternal, ""}

	// ErrTransportUnavailable marks a Transport.Publish error caused by the
	// broker being out of reach rather than by the events (see Transport).
	ErrTransportUnavailable error = &sentinel{"fxevents: transport unavailable", fxcore.ClassUnavailable, "the message broker is unavailable; retry later"}

	// ErrDeadLetterNotFound is returned by a re-drive of an unknown id.
	ErrDeadLetterNotFound error = &sentinel{"fxevents: dead letter not found", fxcore.ClassNotFound, "dead letter not found"}

	// ErrUnknownHandler is returned by HandleOne and Run for a handler name
	// that is not registered (a transport's mistake, never a client's).
	ErrUnknownHandler error = &sentinel{"fxevents: unknown handler", fxcore.ClassInternal, ""}
)

// sentinel is a classified sentinel error: Error is for logs, the class and
// public message for clients.
type sentinel struct {
	text   string
	class  fxcore.ErrorClass
	public string
}

func (e *sentinel) Error() string                 { return e.text }
func (e *sentinel) ErrorClass() fxcore.ErrorClass { return e.class }

// PublicMessage is what a client reads: never the error's own text.
func (e *sentinel) PublicMessage() string {
	if e.public == "" {
		return e.class.Message()
	}
	return e.public
}
