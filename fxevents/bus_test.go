package fxevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents"
)

// recorder collects what a handler received.
type recorder struct {
	mu   sync.Mutex
	got  []fxevents.Envelope
	ctxs []context.Context
}

func (r *recorder) add(ctx context.Context, env fxevents.Envelope) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, env)
	r.ctxs = append(r.ctxs, ctx)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func TestTypedDispatchToSeveralHandlers(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var billing, mailer []OrderCreated
	var shipped []*OrderShipped
	ta := newTestApp(t, nil,
		fxevents.AsHandler(fxevents.HandlerFunc("billing", func(_ context.Context, e OrderCreated) error {
			mu.Lock()
			defer mu.Unlock()
			billing = append(billing, e)
			return nil
		})),
		fxevents.AsHandler(func() fxevents.Handler {
			return fxevents.HandlerFunc("mailer", func(_ context.Context, e OrderCreated) error {
				mu.Lock()
				defer mu.Unlock()
				mailer = append(mailer, e)
				return nil
			})
		}),
		fxevents.AsHandler(fxevents.HandlerFunc("shipping", func(_ context.Context, e *OrderShipped) error {
			mu.Lock()
			defer mu.Unlock()
			shipped = append(shipped, e)
			return nil
		})),
	)
	ctx := context.Background()
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "o1", Seq: 1}, &OrderShipped{OrderID: "o1"}))
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "o2", Seq: 2}))
	eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(billing) == 2 && len(mailer) == 2 && len(shipped) == 1
	}, "every handler gets its events")
	mu.Lock()
	defer mu.Unlock()
	require.ElementsMatch(t, []OrderCreated{{"o1", 1}, {"o2", 2}}, billing)
	require.ElementsMatch(t, billing, mailer)
	require.Equal(t, "o1", shipped[0].OrderID)

	require.ElementsMatch(t, []string{"orders.order_created", "orders.order_shipped"}, ta.registry.Types())
	infos := ta.disp.Handlers()
	require.Len(t, infos, 3)
	require.ElementsMatch(t, []string{"billing", "mailer"}, ta.disp.HandlersFor("orders.order_created"))
}

func TestSlowHandlerDoesNotDelayAnother(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var slowStarted atomic.Int32
	fast := &recorder{}
	ta := newTestApp(t, []string{"MARTY_EVENTS_WORKERS=2", "MARTY_EVENTS_QUEUE_SIZE=64"},
		fxevents.AsHandler(fxevents.HandlerFunc("slow", func(ctx context.Context, e OrderCreated) error {
			slowStarted.Add(1)
			select { // stands for a handler sleeping for a long time
			case <-release:
			case <-time.After(time.Second):
			}
			return nil
		})),
		fxevents.AsHandler(fxevents.WrapHandler(fxevents.HandlerFunc("fast", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error { fast.add(ctx, env); return nil })),
	)
	for i := range 20 {
		require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: fmt.Sprint("o", i), Seq: i}))
	}
	// All 20 reach the fast handler while the slow one is still on its first events.
	eventually(t, func() bool { return fast.len() == 20 }, "fast handler got every event")
	require.LessOrEqual(t, int(slowStarted.Load()), 2, "the slow handler is still busy with its first events")
	require.Positive(t, metric(t, ta.reg, "marty_events_queue_depth", map[string]string{"handler": "slow"}))
	close(release)
}

func TestSameAggregateInPublishOrderWithEightWorkers(t *testing.T) {
	t.Parallel()
	const aggregates, perAggregate = 16, 150
	var mu sync.Mutex
	seen := map[string][]int{}
	ta := newTestApp(t, []string{"MARTY_EVENTS_WORKERS=8", "MARTY_EVENTS_QUEUE_SIZE=64"},
		fxevents.AsHandler(fxevents.HandlerFunc("projector", func(_ context.Context, e OrderCreated) error {
			if e.Seq%7 == 0 {
				time.Sleep(100 * time.Microsecond) // uneven work so workers interleave
			}
			mu.Lock()
			defer mu.Unlock()
			seen[e.OrderID] = append(seen[e.OrderID], e.Seq)
			return nil
		})),
	)
	var wg sync.WaitGroup
	// Two publishers, each owning half the aggregates, interleaving them.
	for p := range 2 {
		wg.Go(func() {
			for i := range perAggregate {
				for a := p; a < aggregates; a += 2 {
					require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: fmt.Sprint("agg-", a), Seq: i}))
				}
			}
		})
	}
	wg.Wait()
	eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, s := range seen {
			n += len(s)
		}
		return n == aggregates*perAggregate
	}, "every event handled")
	mu.Lock()
	defer mu.Unlock()
	for agg, seqs := range seen {
		require.True(t, slices.IsSorted(seqs), "aggregate %s handled out of order: %v", agg, seqs)
		require.Len(t, seqs, perAggregate)
	}
}

func TestRetryThenSuccessWithGrowingDelays(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var at []time.Time
	ta := newTestApp(t, []string{"MARTY_EVENTS_BACKOFF_INITIAL=20ms", "MARTY_EVENTS_MAX_ATTEMPTS=5"},
		fxevents.AsHandler(fxevents.HandlerFunc("flaky", func(context.Context, OrderCreated) error {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) < 4 {
				return errors.New("database busy")
			}
			return nil
		})),
	)
	require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "o1"}))
	labels := map[string]string{"type": "orders.order_created", "handler": "flaky"}
	eventually(t, func() bool { return metric(t, ta.reg, "marty_events_handled_total", labels) == 1 }, "handled after retries")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, at, 4)
	requireBackoffGaps(t, at, 20*time.Millisecond)
	require.Equal(t, 3.0, metric(t, ta.reg, "marty_events_failed_total", labels))
	require.Equal(t, 3.0, metric(t, ta.reg, "marty_events_retried_total", labels))
	require.Equal(t, 0.0, metric(t, ta.reg, "marty_events_dead_total", labels))
	require.Equal(t, 4.0, metric(t, ta.reg, "marty_events_handler_duration_seconds", labels))
	require.Equal(t, 1.0, metric(t, ta.reg, "marty_events_published_total", map[string]string{"type": "orders.order_created"}))
}

// requireBackoffGaps checks that no retry came before its computed delay:
// the gap before attempt n+1 is at least the lowest backoff of attempt n
// (initial·2^(n-1), less the 20% jitter). A slow machine only widens the
// gaps, so this holds under any load; that the schedule grows is checked
// on the schedule itself (TestBackoffScheduleGrows), not on wall time.
func requireBackoffGaps(t *testing.T, at []time.Time, initial time.Duration) {
	t.Helper()
	for i := 1; i < len(at); i++ {
		least := time.Duration(0.8 * float64(initial<<(i-1)))
		require.GreaterOrEqual(t, at[i].Sub(at[i-1]), least, "attempt %d came before its backoff: %v", i+1, at)
	}
}

func TestBackoffScheduleGrows(t *testing.T) {
	t.Parallel()
	const initial, maxDelay = 40 * time.Millisecond, time.Second
	for range 200 { // the jitter is random: many draws
		prev := time.Duration(0)
		for attempt := 1; attempt <= 6; attempt++ {
			d := fxevents.Backoff(initial, maxDelay, attempt)
			base := min(initial<<(attempt-1), maxDelay)
			require.GreaterOrEqual(t, d, time.Duration(0.8*float64(base)), "attempt %d", attempt)
			require.LessOrEqual(t, d, time.Duration(1.2*float64(base)), "attempt %d", attempt)
			if base < maxDelay {
				require.Greater(t, d, prev, "attempt %d waits longer than attempt %d", attempt, attempt-1)
			}
			prev = d
		}
	}
	d := fxevents.Backoff(initial, maxDelay, 0)
	require.GreaterOrEqual(t, d, time.Duration(0.8*float64(initial)), "attempt 0 counts as the first")
}

func TestDeadLetterAfterMaxAttemptsThenRedrive(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var healthy atomic.Bool
	ta := newTestApp(t, []string{"MARTY_EVENTS_BACKOFF_INITIAL=1ms", "MARTY_EVENTS_BACKOFF_MAX=2ms", "MARTY_EVENTS_MAX_ATTEMPTS=3"},
		fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(context.Context, OrderCreated) error {
			calls.Add(1)
			if healthy.Load() {
				return nil
			}
			return errors.New("smtp: 554 rejected")
		})),
	)
	require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "o9", Seq: 9}))
	labels := map[string]string{"type": "orders.order_created", "handler": "mailer"}
	eventually(t, func() bool { return metric(t, ta.reg, "marty_events_dead_total", labels) == 1 }, "dead-lettered")
	require.Equal(t, int32(3), calls.Load())

	// The admin route lists it with its error.
	resp, err := http.Get(ta.admin.URL + "/events/dead")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var list struct {
		DeadLetters []struct {
			ID, Handler, Type, Error, AggregateID string
			Attempts                              int
			Payload                               json.RawMessage
		} `json:"dead_letters"`
	}
	require.NoError(t, json.Unmarshal(body, &list), string(body))
	require.Len(t, list.DeadLetters, 1)
	dl := list.DeadLetters[0]
	require.Equal(t, "mailer", dl.Handler)
	require.Equal(t, "smtp: 554 rejected", dl.Error)
	require.Equal(t, 3, dl.Attempts)
	require.JSONEq(t, `{"order_id":"o9","seq":9}`, string(dl.Payload))

	// Re-drive of an unknown id is a 404; of the real one runs the handler.
	resp, err = http.Post(ta.admin.URL+"/events/dead/nope/retry", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	healthy.Store(true)
	resp, err = http.Post(ta.admin.URL+"/events/dead/"+dl.ID+"/retry", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, int32(4), calls.Load())
	require.Equal(t, 1.0, metric(t, ta.reg, "marty_events_handled_total", labels))
	left, err := ta.disp.DeadLetters().List(context.Background(), 0)
	require.NoError(t, err)
	require.Empty(t, left)
}

func TestPanicBecomesAnErrorAndOthersContinue(t *testing.T) {
	t.Parallel()
	got := &recorder{}
	ta := newTestApp(t, []string{"MARTY_EVENTS_MAX_ATTEMPTS=1"},
		fxevents.AsHandler(fxevents.HandlerFunc("boom", func(_ context.Context, e OrderCreated) error {
			if e.Seq == 1 {
				panic("nil map write")
			}
			return nil
		})),
		fxevents.AsHandler(fxevents.WrapHandler(fxevents.HandlerFunc("after", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error { got.add(ctx, env); return nil })),
	)
	require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "a", Seq: 1}, OrderCreated{OrderID: "a", Seq: 2}))
	labels := map[string]string{"type": "orders.order_created", "handler": "boom"}
	eventually(t, func() bool {
		return metric(t, ta.reg, "marty_events_dead_total", labels) == 1 && metric(t, ta.reg, "marty_events_handled_total", labels) == 1
	}, "the panic is dead-lettered and the next event is handled")
	dls, _ := ta.disp.DeadLetters().List(context.Background(), 0)
	require.Len(t, dls, 1)
	require.Contains(t, dls[0].Error, "handler panicked: nil map write")
	eventually(t, func() bool { return got.len() == 2 }, "the other handler got both")
}

func TestHandlerTimeout(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t, []string{"MARTY_EVENTS_MAX_ATTEMPTS=1", "MARTY_EVENTS_HANDLER_TIMEOUT=30ms"},
		fxevents.AsHandler(fxevents.HandlerFunc("stuck", func(ctx context.Context, _ OrderCreated) error {
			dl, ok := ctx.Deadline()
			if !ok || time.Until(dl) > 30*time.Millisecond {
				return fxevents.Permanent(errors.New("no handler deadline"))
			}
			child, cancel := context.WithTimeout(ctx, time.Hour) // derived contexts end with it
			defer cancel()
			<-child.Done()
			return child.Err()
		})),
	)
	require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "a"}))
	eventually(t, func() bool {
		dls, _ := ta.disp.DeadLetters().List(context.Background(), 0)
		return len(dls) == 1
	}, "timed out handler is dead-lettered")
	dls, _ := ta.disp.DeadLetters().List(context.Background(), 0)
	require.Contains(t, dls[0].Error, "handler timeout 30ms exceeded")
}

func TestBackPressureFailReturnsErrBufferFull(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	ta := newTestApp(t, []string{"MARTY_EVENTS_WORKERS=1", "MARTY_EVENTS_QUEUE_SIZE=1", "MARTY_EVENTS_BACK_PRESSURE=fail"},
		fxevents.AsHandler(fxevents.HandlerFunc("blocked", func(context.Context, OrderCreated) error {
			started <- struct{}{}
			<-release
			return nil
		})),
	)
	defer close(release)
	ctx := context.Background()
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "1"}))
	<-started                                                           // the worker holds event 1
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "2"})) // fills the queue
	err := ta.bus.Publish(ctx, OrderCreated{OrderID: "3"})
	require.ErrorIs(t, err, fxevents.ErrBufferFull)
	require.Contains(t, err.Error(), "handler blocked")

	// The non-critical readiness check reports the full queue.
	require.Len(t, ta.checks, 1)
	check := ta.checks[0]
	require.False(t, check.Critical)
	require.ErrorContains(t, check.Func(ctx), "handler queues full: [blocked]")
	require.Equal(t, 1.0, metric(t, ta.reg, "marty_events_queue_depth", map[string]string{"handler": "blocked"}))
}

func TestBackPressureWaitUntilRoomOrContextEnds(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	got := &recorder{}
	ta := newTestApp(t, []string{"MARTY_EVENTS_WORKERS=1", "MARTY_EVENTS_QUEUE_SIZE=1"},
		fxevents.AsHandler(fxevents.WrapHandler(fxevents.HandlerFunc("blocked", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error {
				started <- struct{}{}
				<-release
				got.add(ctx, env)
				return nil
			})),
	)
	ctx := context.Background()
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "1"}))
	<-started
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "2"}))
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := ta.bus.Publish(short, OrderCreated{OrderID: "3"})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() { done <- ta.bus.Publish(ctx, OrderCreated{OrderID: "4"}) }()
	select {
	case err := <-done:
		t.Fatalf("publish returned before there was room: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	require.NoError(t, <-done)
	eventually(t, func() bool { return got.len() == 3 }, "events 1, 2 and 4 handled")
}

func TestStopDrainsQueuedEventsBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	got := &recorder{}
	ta := newTestApp(t, []string{"MARTY_EVENTS_WORKERS=1", "MARTY_EVENTS_QUEUE_SIZE=100"},
		fxevents.AsHandler(fxevents.WrapHandler(fxevents.HandlerFunc("slowish", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error {
				time.Sleep(2 * time.Millisecond)
				got.add(ctx, env)
				return nil
			})),
	)
	for i := range 50 {
		require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "a", Seq: i}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, ta.app.Stop(ctx))
	require.Equal(t, 50, got.len(), "everything queued was delivered")
	require.ErrorIs(t, ta.bus.Publish(context.Background(), OrderCreated{}), fxevents.ErrClosed)
}

func TestStopDeadlineCountsUndelivered(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t, []string{"MARTY_EVENTS_WORKERS=1", "MARTY_EVENTS_QUEUE_SIZE=100"},
		fxevents.AsHandler(fxevents.HandlerFunc("stuck", func(ctx context.Context, _ OrderCreated) error {
			<-ctx.Done()
			return ctx.Err()
		})),
	)
	for i := range 10 {
		require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "a", Seq: i}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := ta.app.Stop(ctx)
	require.Error(t, err)
	// fx returns at the deadline while the hook finishes counting.
	eventually(t, func() bool {
		return metric(t, ta.reg, "marty_events_undelivered_total", map[string]string{"handler": "stuck"}) == 10
	}, "the in-flight and 9 queued events are counted undelivered")
	require.Equal(t, 0.0, metric(t, ta.reg, "marty_events_dead_total", map[string]string{"type": "orders.order_created", "handler": "stuck"}),
		"events cut off by the stop are not dead letters")
}

func TestHandlerSpanContinuesThePublishersTrace(t *testing.T) {
	got := &recorder{}
	ta := newTestApp(t, nil,
		fxevents.AsHandler(fxevents.WrapHandler(fxevents.HandlerFunc("audit", func(context.Context, OrderCreated) error { return nil }),
			func(ctx context.Context, env fxevents.Envelope) error { got.add(ctx, env); return nil })),
	)
	ctx, parent := ta.tp.Tracer("test").Start(context.Background(), "POST /orders")
	m, err := baggage.NewMember("tenant", "acme")
	require.NoError(t, err)
	bag, err := baggage.New(m)
	require.NoError(t, err)
	ctx = baggage.ContextWithBaggage(ctx, bag)
	ctx = fxevents.WithCorrelationID(ctx, "req-123")
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "o1"}))
	parent.End()
	eventually(t, func() bool { return got.len() == 1 }, "handled")

	env := got.got[0]
	require.Equal(t, "orders", env.Source)
	require.Equal(t, "o1", env.AggregateID)
	require.Equal(t, "req-123", env.CorrelationID())
	require.Contains(t, env.Metadata, "traceparent")
	require.Contains(t, env.Metadata["baggage"], "tenant=acme")
	hctx := got.ctxs[0]
	require.Equal(t, "req-123", fxevents.CorrelationID(hctx))
	require.Equal(t, "acme", baggage.FromContext(hctx).Member("tenant").Value())

	eventually(t, func() bool { return len(ta.spans.Ended()) == 3 }, "three spans")
	var publish, process trace.SpanContext
	var processParent trace.SpanContext
	for _, s := range ta.spans.Ended() {
		switch s.Name() {
		case "publish orders.order_created":
			publish = s.SpanContext()
			require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
			require.Equal(t, trace.SpanKindProducer, s.SpanKind())
		case "process orders.order_created":
			process = s.SpanContext()
			processParent = s.Parent()
			require.Equal(t, trace.SpanKindConsumer, s.SpanKind())
		}
	}
	require.True(t, publish.IsValid() && process.IsValid())
	require.Equal(t, publish.TraceID(), process.TraceID(), "same trace")
	require.Equal(t, publish.SpanID(), processParent.SpanID(), "handler span's parent is the publish span")
	require.Equal(t, process.SpanID(), trace.SpanContextFromContext(hctx).SpanID(), "the handler runs in its span")
}

func TestSyncModeReturnsJoinedHandlerErrors(t *testing.T) {
	t.Parallel()
	errA, errB := errors.New("a failed"), errors.New("b failed")
	var ran atomic.Int32
	ta := newTestApp(t, []string{"MARTY_EVENTS_SYNC=true", "MARTY_EVENTS_MAX_ATTEMPTS=1"},
		fxevents.AsHandler(fxevents.HandlerFunc("a", func(context.Context, OrderCreated) error { ran.Add(1); return errA })),
		fxevents.AsHandler(fxevents.HandlerFunc("b", func(context.Context, OrderCreated) error { ran.Add(1); return errB })),
		fxevents.AsHandler(fxevents.HandlerFunc("c", func(context.Context, OrderCreated) error { ran.Add(1); return nil })),
	)
	err := ta.bus.Publish(context.Background(), OrderCreated{OrderID: "o1"})
	require.Equal(t, int32(3), ran.Load(), "Publish returned after every handler ran")
	require.ErrorIs(t, err, errA)
	require.ErrorIs(t, err, errB)
	require.Contains(t, err.Error(), "handler a on orders.order_created")
	require.Contains(t, err.Error(), "handler b on orders.order_created")

	require.NoError(t, ta.bus.Publish(context.Background(), &OrderShipped{OrderID: "no handler"}))
}

func TestMiddlewareRunsInExplicitOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var trail []string
	mark := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		trail = append(trail, s)
	}
	mw := func(name string) func(fxevents.Handler) fxevents.Handler {
		return func(h fxevents.Handler) fxevents.Handler {
			return fxevents.WrapHandler(h, func(ctx context.Context, env fxevents.Envelope) error {
				mark(name + ">" + h.Name())
				return h.Handle(ctx, env)
			})
		}
	}
	ta := newTestApp(t, []string{"MARTY_EVENTS_SYNC=true"},
		fxevents.AsHandlerMiddleware(mw("inner"), 10),
		fxevents.AsHandlerMiddleware(func() func(fxevents.Handler) fxevents.Handler { return mw("outer") }, -5),
		fxevents.AsHandler(fxevents.HandlerFunc("h", func(context.Context, OrderCreated) error { mark("handler"); return nil })),
	)
	require.NoError(t, ta.bus.Publish(context.Background(), OrderCreated{OrderID: "x"}))
	require.Equal(t, []string{"outer>h", "inner>h", "handler"}, trail)
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  []string
		opts []fx.Option
		want string
	}{
		{"bad bus", []string{"MARTY_EVENTS_BUS=kafka"}, nil, `MARTY_EVENTS_BUS="kafka"`},
		{"bad back pressure", []string{"MARTY_EVENTS_BACK_PRESSURE=drop"}, nil, "MARTY_EVENTS_BACK_PRESSURE"},
		{"bad workers", []string{"MARTY_EVENTS_WORKERS=0"}, nil, "MARTY_EVENTS_WORKERS"},
		{"outbox without a database", []string{"MARTY_EVENTS_BUS=outbox"}, nil, "add fxrepo.Module"},
		{"wrong handler type", nil, []fx.Option{fxevents.AsHandler(func() string { return "x" })}, "want an fxevents.Handler"},
		{"duplicate names", nil, []fx.Option{
			fxevents.AsHandler(fxevents.HandlerFunc("dup", func(context.Context, OrderCreated) error { return nil })),
			fxevents.AsHandler(fxevents.HandlerFunc("dup", func(context.Context, *OrderShipped) error { return nil })),
		}, `two handlers are named "dup"`},
		{"wrong middleware", nil, []fx.Option{fxevents.AsHandlerMiddleware(42, 1)}, "want func(fxevents.Handler) fxevents.Handler"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, opts := testOptions(t, tc.env, tc.opts...)
			app := fx.New(opts...)
			err := app.Err()
			if err == nil {
				err = app.Start(context.Background())
				_ = app.Stop(context.Background())
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}
