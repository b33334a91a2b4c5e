package fxevents

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"time"
)

// Event is a domain event. EventType names it on the wire
// ("orders.order_created"); it must not depend on the value, since the type
// registry calls it on a zero value.
type Event interface {
	EventType() string
}

// Aggregated is implemented by events that belong to an aggregate: events of
// the same aggregate are handled in the order they were published.
type Aggregated interface {
	AggregateID() string
}

// Envelope is an event on its way: what the outbox stores and transports
// carry. Metadata holds the W3C trace context (traceparent, tracestate),
// baggage, the correlation id (MetaCorrelationID) and the payload's content
// type (MetaContentType, absent for JSON).
type Envelope struct {
	// ID is a UUIDv7 (time-ordered), unique per event.
	ID string `json:"id"`
	// Type is Event.EventType().
	Type string `json:"type"`
	// Source is the publishing service's name.
	Source string `json:"source"`
	// AggregateID is the ordering key ("" for none).
	AggregateID string `json:"aggregate_id,omitempty"`
	// OccurredAt is when Publish was called.
	OccurredAt time.Time `json:"occurred_at"`
	// Payload is the encoded event.
	Payload []byte `json:"payload"`
	// Metadata is string headers; may be nil.
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Metadata keys set by fxevents.
const (
	// MetaCorrelationID is the correlation id; absent when it equals the ID.
	MetaCorrelationID = "correlation-id"
	// MetaContentType is the payload's content type; absent for JSON.
	MetaContentType = "content-type"
)

// ContentType is the payload's content type (ContentTypeJSON by default).
func (e Envelope) ContentType() string {
	if ct := e.Metadata[MetaContentType]; ct != "" {
		return ct
	}
	return ContentTypeJSON
}

// CorrelationID is the id shared by every event caused by the same request:
// Metadata[MetaCorrelationID], or the event's own ID for a chain's first.
func (e Envelope) CorrelationID() string {
	if id := e.Metadata[MetaCorrelationID]; id != "" {
		return id
	}
	return e.ID
}

// NewEnvelope encodes ev with codec into an Envelope with a fresh UUIDv7,
// the aggregate id and the time. Trace context and correlation id are added
// by the bus (see Dispatcher.Envelope); transports receive envelopes ready.
func NewEnvelope(source string, ev Event, codec Codec) (Envelope, error) {
	if ev == nil {
		return Envelope{}, errors.New("fxevents: nil event")
	}
	typ := ev.EventType()
	if typ == "" {
		return Envelope{}, fmt.Errorf("fxevents: event %T has an empty EventType", ev)
	}
	ct, payload, err := codec.Encode(ev)
	if err != nil {
		return Envelope{}, fmt.Errorf("fxevents: encode %s: %w", typ, err)
	}
	now := time.Now()
	env := Envelope{ID: newEventID(now), Type: typ, Source: source, OccurredAt: now.UTC(), Payload: payload}
	if a, ok := ev.(Aggregated); ok {
		env.AggregateID = a.AggregateID()
	}
	if ct != ContentTypeJSON {
		env.Metadata = map[string]string{MetaContentType: ct}
	}
	if v := eventVersion(ev); v > 1 { // see version.go
		if env.Metadata == nil {
			env.Metadata = map[string]string{}
		}
		env.Metadata[MetaEventVersion] = strconv.Itoa(v)
	}
	return env, nil
}

// Registry maps event type names to Go types, so a consumer can decode an
// Envelope into its event. The Module builds it from the typed handlers
// (HandlerFunc) and provides it in the graph.
type Registry struct {
	mu    sync.RWMutex
	types map[string]reflect.Type
}

// NewRegistry returns a registry of the given prototype events.
func NewRegistry(prototypes ...Event) (*Registry, error) {
	r := &Registry{types: map[string]reflect.Type{}}
	for _, p := range prototypes {
		if err := r.Register(p); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds the type of prototype under its EventType. Registering the
// same name for two Go types is an error.
func (r *Registry) Register(prototype Event) error {
	if prototype == nil {
		return errors.New("fxevents: register nil event")
	}
	name := prototype.EventType()
	t := reflect.TypeOf(prototype)
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.types[name]; ok && prev != t {
		return fmt.Errorf("fxevents: event type %q is both %s and %s", name, prev, t)
	}
	r.types[name] = t
	return nil
}

// Types returns the registered event type names.
func (r *Registry) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.types))
	for k := range r.types {
		out = append(out, k)
	}
	return out
}

// Decode returns env's event as its registered Go type (a value or a pointer,
// as registered), decoded with codec.
func (r *Registry) Decode(env Envelope, codec Codec) (Event, error) {
	r.mu.RLock()
	t, ok := r.types[env.Type]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("fxevents: event type %q is not registered", env.Type)
	}
	var ptr reflect.Value
	if t.Kind() == reflect.Pointer {
		ptr = reflect.New(t.Elem())
		if err := codec.Decode(env.ContentType(), env.Payload, ptr.Interface()); err != nil {
			return nil, fmt.Errorf("fxevents: decode %s: %w", env.Type, err)
		}
		return ptr.Interface().(Event), nil
	}
	ptr = reflect.New(t)
	if err := codec.Decode(env.ContentType(), env.Payload, ptr.Interface()); err != nil {
		return nil, fmt.Errorf("fxevents: decode %s: %w", env.Type, err)
	}
	return ptr.Elem().Interface().(Event), nil
}
