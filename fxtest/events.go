package fxtest

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// Published is one event handed to the app's fxevents.Bus.
type Published struct {
	// Event is the value passed to Publish.
	Event fxevents.Event
	// Envelope is the event encoded with the app's codec and service name:
	// Type, Source, AggregateID, Payload and the content type are those the
	// bus sends; ID, OccurredAt and the trace metadata are the harness's own.
	Envelope fxevents.Envelope
	// Err is what the Publish call that carried the event returned (in sync
	// mode, the handlers' errors too).
	Err error
}

// eventRecorder wraps the app's Bus and records every event published.
type eventRecorder struct {
	mu     sync.Mutex
	events []Published
}

type recordingBus struct {
	fxevents.Bus
	rec    *eventRecorder
	codec  fxevents.Codec
	source string
}

func (r *eventRecorder) decorate(b fxevents.Bus, codec fxevents.Codec, info fxcore.ServiceInfo) fxevents.Bus {
	return &recordingBus{Bus: b, rec: r, codec: codec, source: info.Name}
}

// Unwrap returns the app's bus, so that what needs a particular bus (the
// saga runtime needs the outbox) finds it under the recorder.
func (b *recordingBus) Unwrap() fxevents.Bus { return b.Bus }

// Publish implements fxevents.Bus: it publishes through the app's bus and
// records the events with the outcome.
func (b *recordingBus) Publish(ctx context.Context, events ...fxevents.Event) error {
	var (
		mu   sync.Mutex
		envs []fxevents.Envelope
	)
	ctx = fxevents.WithEnvelopeObserver(ctx, func(env fxevents.Envelope) {
		mu.Lock()
		envs = append(envs, env)
		mu.Unlock()
	})
	err := b.Bus.Publish(ctx, events...)
	mu.Lock()
	defer mu.Unlock()
	b.rec.mu.Lock()
	defer b.rec.mu.Unlock()
	for i, ev := range events {
		p := Published{Event: ev, Err: err}
		if i < len(envs) {
			p.Envelope = envs[i] // the envelope the bus really built
		} else {
			// Publish failed before building it (e.g. the codec refused the
			// event): describe it as the bus would have.
			env, eerr := fxevents.NewEnvelope(b.source, ev, b.codec)
			p.Envelope = env
			if err == nil && eerr != nil {
				p.Err = eerr
			}
		}
		b.rec.events = append(b.rec.events, p)
	}
	return err
}

func (r *eventRecorder) all() []Published {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Published(nil), r.events...)
}

// Events returns every event published so far through the app's
// fxevents.Bus, in order, including those whose Publish failed (see
// Published.Err).
func (a *App) Events() []Published { return a.events.all() }

// RequirePublished waits (up to WaitTimeout) until events of T's type were
// published without error and returns them decoded from their payload with
// the app's codec (so a test sees what handlers receive). Otherwise it fails
// the test listing the events that were published. T is the event type (a
// struct or a pointer to one).
func RequirePublished[T fxevents.Event](a *App) []T {
	a.t.Helper()
	typ := eventTypeOf[T]()
	var out []T
	var decodeErr error
	a.eventually(func() bool {
		out, decodeErr = nil, nil
		for _, p := range a.events.all() {
			if p.Envelope.Type != typ || p.Err != nil {
				continue
			}
			v, err := decodeEvent[T](p.Envelope, a.codec())
			if err != nil {
				decodeErr = err
				return true
			}
			out = append(out, v)
		}
		return len(out) > 0
	})
	if decodeErr != nil {
		a.fatalf("fxtest: decode a published %s: %v", typ, decodeErr)
		return nil
	}
	if len(out) == 0 {
		a.fatalf("fxtest: no %s event (%s) was published; the events were:\n%s", typ, reflect.TypeFor[T](), formatEvents(a.events.all()))
	}
	return out
}

func (a *App) codec() fxevents.Codec {
	if a.g.Codec != nil {
		return a.g.Codec
	}
	return fxevents.DefaultCodec()
}

func eventTypeOf[T fxevents.Event]() string {
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Pointer {
		return reflect.New(t.Elem()).Interface().(fxevents.Event).EventType()
	}
	var zero T
	return zero.EventType()
}

func decodeEvent[T fxevents.Event](env fxevents.Envelope, codec fxevents.Codec) (T, error) {
	var v T
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Pointer {
		p := reflect.New(t.Elem())
		if err := codec.Decode(env.ContentType(), env.Payload, p.Interface()); err != nil {
			return v, fmt.Errorf("%s %s into %s: %w", env.Type, env.ID, t, err)
		}
		return p.Interface().(T), nil
	}
	if err := codec.Decode(env.ContentType(), env.Payload, &v); err != nil {
		return v, fmt.Errorf("%s %s into %s: %w", env.Type, env.ID, t, err)
	}
	return v, nil
}

func formatEvents(events []Published) string {
	if len(events) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, p := range events {
		fmt.Fprintf(&b, "  %s (%T) %s", p.Envelope.Type, p.Event, clip(p.Envelope.Payload))
		if p.Err != nil {
			fmt.Fprintf(&b, " publish error: %v", p.Err)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitHandled waits (up to WaitTimeout) until every handler has finished
// every event of its types published so far: handled, or dead-lettered after
// its last attempt. It reads the marty_events_* counters, so it works with the
// memory bus in async mode, the outbox and a transport alike. Otherwise it
// fails the test listing the handlers still behind.
func (a *App) WaitHandled() {
	a.t.Helper()
	if a.g.Dispatcher == nil || a.g.Gatherer == nil {
		a.fatalf("fxtest: WaitHandled(): the app has no event bus: add fxevents.Module")
		return
	}
	var behind []string
	if a.eventually(func() bool { behind = a.pendingHandlers(); return len(behind) == 0 }) {
		return
	}
	a.fatalf("fxtest: handlers still behind after %s:\n  %s", a.wait, strings.Join(behind, "\n  "))
}

// pendingHandlers lists "handler: k of n <type> events finished" for every
// handler that has not finished every published event of a type.
func (a *App) pendingHandlers() []string {
	pub := a.series("marty_events_published_total", "type")
	handled := a.series("marty_events_handled_total", "type", "handler")
	dead := a.series("marty_events_dead_total", "type", "handler")
	var out []string
	for typ, n := range pub {
		for _, h := range a.g.Dispatcher.HandlersFor(typ) {
			k := handled[typ+"\x00"+h] + dead[typ+"\x00"+h]
			if k < n {
				out = append(out, fmt.Sprintf("%s: %g of %g %s events finished", h, k, n, typ))
			}
		}
	}
	sort.Strings(out)
	return out
}

// series returns the values of a metric keyed by its label values joined
// with NUL.
func (a *App) series(name string, labels ...string) map[string]float64 {
	out := map[string]float64{}
	mfs, err := a.g.Gatherer.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			key := make([]string, len(labels))
			for i, l := range labels {
				key[i] = got[l]
			}
			out[strings.Join(key, "\x00")] += value(m)
		}
	}
	return out
}
