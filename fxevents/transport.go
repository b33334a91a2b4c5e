package fxevents

import (
	"context"
)

// Transport is a message broker behind the bus. It is optional: when the
// graph has a Transport (natsjs.Module provides one), the memory bus's
// Publish and the outbox relay send envelopes to it INSTEAD of dispatching to
// the app's handlers in process, and count an event delivered only once
// Publish returned nil. The transport's consumers then feed the handlers:
// for every HandlerInfo of Dispatcher.Handlers, a durable consumer receives
// the handler's EventTypes and calls Dispatcher.HandleOne for each message,
// acknowledging or redelivering as the Result says.
//
// A Transport is provided as an fxevents.Transport:
//
//	fx.Provide(func(c *natsjs.Conn) fxevents.Transport { return c })
type Transport interface {
	// Publish sends the envelopes, in order, and returns nil only when the
	// broker has durably accepted every one of them. Envelopes of the same
	// AggregateID must stay in the given order. It may be called from
	// several goroutines at once.
	//
	// When the broker cannot be reached (disconnected, reconnecting), the
	// error should match ErrTransportUnavailable (errors.Is): the outbox
	// relay then leaves the rows as they are, counts no attempt and tries
	// again after a pause, so an outage delays events and never
	// dead-letters them. Other errors count as failed delivery attempts.
	Publish(ctx context.Context, envs ...Envelope) error
}
