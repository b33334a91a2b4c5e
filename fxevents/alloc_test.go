package fxevents_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/martyfx/martyfx/fxevents"
)

// rawEvent carries its payload already encoded; rawCodec passes it through,
// so the allocations counted below are the bus's own.
type rawEvent struct{ payload []byte }

func (*rawEvent) EventType() string { return "alloc.raw" }

type rawCodec struct{}

func (rawCodec) Encode(ev fxevents.Event) (string, []byte, error) {
	return fxevents.ContentTypeJSON, ev.(*rawEvent).payload, nil
}
func (rawCodec) Decode(string, []byte, any) error { return nil }

type signalHandler struct{ done chan struct{} }

func (signalHandler) Name() string         { return "alloc" }
func (signalHandler) EventTypes() []string { return []string{"alloc.raw"} }
func (h signalHandler) Handle(context.Context, fxevents.Envelope) error {
	h.done <- struct{}{}
	return nil
}

// TestMemoryBusPublishToHandlerAllocatesOnlyTheHandlerContext guards the
// memory bus's hot path without tracing (the Module's noop provider and W3C
// propagator, default config: 4 workers, handler timeout): from Publish to
// the handler's return, once warm, the one allocation per event is the
// handler's context (correlation id, codec, deadline); the event ID comes
// from a block of 64 and the envelope stays on the stack (5 allocations
// before).
func TestMemoryBusPublishToHandlerAllocatesOnlyTheHandlerContext(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not deterministic under the race detector (it drops sync.Pool items); run without -race")
	}
	h := signalHandler{done: make(chan struct{}, 1)}
	d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{
		TracerProvider: noop.NewTracerProvider(),
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Codec:          rawCodec{},
		Handlers:       []fxevents.Handler{h},
	})
	require.NoError(t, err)
	bus, err := fxevents.NewMemoryBus(fxevents.MemoryBusOptions{Dispatcher: d})
	require.NoError(t, err)
	require.NoError(t, bus.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, bus.Stop(context.Background())) })

	ctx := context.Background()
	evs := []fxevents.Event{&rawEvent{payload: []byte(`{"order_id":"o-1"}`)}}
	publish := func() {
		if err := bus.Publish(ctx, evs...); err != nil {
			panic(err)
		}
		<-h.done
	}
	for range 1000 { // warm: pools, the metric children, the channels
		publish()
	}
	require.LessOrEqual(t, testing.AllocsPerRun(2000, publish), 1.0, "allocations per published and handled event")
}

// TestEventIDsAreUUIDv7InIncreasingOrder checks the IDs NewEnvelope makes:
// valid version-7 UUIDs, unique across goroutines, and strictly increasing
// within the process (their time-ordered text sorts as they were made).
func TestEventIDsAreUUIDv7InIncreasingOrder(t *testing.T) {
	t.Parallel()
	const goroutines, each = 4, 5000
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range each {
				env, err := fxevents.NewEnvelope("svc", &rawEvent{}, rawCodec{})
				if err != nil {
					panic(err)
				}
				ids[g] = append(ids[g], env.ID)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	before := time.Now().Add(-time.Minute)
	for _, list := range ids {
		for i, id := range list {
			u, err := uuid.Parse(id)
			require.NoError(t, err, id)
			require.Equal(t, uuid.Version(7), u.Version(), id)
			require.Equal(t, uuid.RFC4122, u.Variant(), id)
			require.Equal(t, u.String(), id, "canonical lower-case form")
			require.True(t, time.Unix(u.Time().UnixTime()).After(before), "the id carries the time it was made: %s", id)
			require.False(t, seen[id], "duplicate id %s", id)
			seen[id] = true
			if i > 0 {
				require.Less(t, list[i-1], id, "ids of one goroutine increase")
			}
		}
	}
	require.Len(t, seen, goroutines*each)
}
