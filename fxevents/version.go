package fxevents

import (
	"context"
	"fmt"
	"strconv"
)

// MetaEventVersion is the Envelope.Metadata key of the event's schema
// version, set by Publish for events that implement Versioned with a
// version above 1; absent means version 1.
const MetaEventVersion = "event-version"

// Versioned is implemented by events whose payload schema has a version:
// EventVersion returns the version of the Go type (1 for the first; like
// EventType it must not depend on the value). An older build's payload of
// the same EventType is brought up to date by Upcasters on read.
type Versioned interface {
	EventVersion() int
}

// Version is the schema version of the envelope's payload:
// Metadata[MetaEventVersion], or 1 when absent or malformed.
func (e Envelope) Version() int {
	if v, err := strconv.Atoi(e.Metadata[MetaEventVersion]); err == nil && v > 0 {
		return v
	}
	return 1
}

// eventVersion is ev's version (1 unless it implements Versioned).
func eventVersion(ev Event) int {
	if v, ok := ev.(Versioned); ok && v.EventVersion() > 1 {
		return v.EventVersion()
	}
	return 1
}

// Upcaster turns the payload of an event of Type written at version From
// into the payload of version From+1. Upcasters chain: a v1 payload meets
// the v1→v2 then the v2→v3 upcaster.
type Upcaster struct {
	// Type is the event type (EventType) the upcaster applies to.
	Type string
	// From is the version it reads; it writes From+1.
	From int
	// Upcast returns the new payload (same content type) from the old.
	Upcast func(payload []byte) ([]byte, error)
}

// Upcasters brings envelopes written by an older build up to the version
// a consumer knows. The zero value upcasts nothing.
type Upcasters struct {
	m map[string]map[int]Upcaster
}

// NewUpcasters indexes ups by type and version; two upcasters for the same
// type and From, or one without Type, Upcast or a positive From, are an
// error.
func NewUpcasters(ups ...Upcaster) (*Upcasters, error) {
	u := &Upcasters{m: map[string]map[int]Upcaster{}}
	for _, up := range ups {
		if up.Type == "" || up.From < 1 || up.Upcast == nil {
			return nil, fmt.Errorf("fxevents: upcaster %q from %d needs a Type, a From >= 1 and an Upcast func", up.Type, up.From)
		}
		byFrom := u.m[up.Type]
		if byFrom == nil {
			byFrom = map[int]Upcaster{}
			u.m[up.Type] = byFrom
		}
		if _, dup := byFrom[up.From]; dup {
			return nil, fmt.Errorf("fxevents: two upcasters for %s from version %d", up.Type, up.From)
		}
		byFrom[up.From] = up
	}
	return u, nil
}

// Upcast returns env with its payload brought to the latest version the
// upcasters reach (its Metadata updated to say so); env is returned as is
// when no upcaster applies.
func (u *Upcasters) Upcast(env Envelope) (Envelope, error) {
	if u == nil || len(u.m[env.Type]) == 0 {
		return env, nil
	}
	byFrom := u.m[env.Type]
	v := env.Version()
	changed := false
	for {
		up, ok := byFrom[v]
		if !ok {
			break
		}
		p, err := up.Upcast(env.Payload)
		if err != nil {
			return env, fmt.Errorf("fxevents: upcast %s from version %d: %w", env.Type, v, err)
		}
		env.Payload = p
		v++
		changed = true
	}
	if changed {
		meta := make(map[string]string, len(env.Metadata)+1)
		for k, val := range env.Metadata {
			meta[k] = val
		}
		meta[MetaEventVersion] = strconv.Itoa(v)
		env.Metadata = meta
	}
	return env, nil
}

// UpcastMiddleware returns handler middleware that upcasts every envelope
// before the handler decodes it, whether it came from the outbox relay or
// a broker; an envelope that fails to upcast is a Permanent error
// (dead-lettered). Register it with AsHandlerMiddleware.
func UpcastMiddleware(u *Upcasters) func(Handler) Handler {
	return func(h Handler) Handler {
		return WrapHandler(h, func(ctx context.Context, env Envelope) error {
			up, err := u.Upcast(env)
			if err != nil {
				return Permanent(err)
			}
			return h.Handle(ctx, up)
		})
	}
}
