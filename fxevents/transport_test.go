package fxevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/martyfx/martyfx/fxevents"
)

// captureTransport is a Transport that keeps what it is given (a broker's
// stand-in for the contract; natsjs tests the real one).
type captureTransport struct {
	mu   sync.Mutex
	envs []fxevents.Envelope
	fail error
}

func (c *captureTransport) Publish(_ context.Context, envs ...fxevents.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.envs = append(c.envs, envs...)
	return nil
}

func TestTransportReplacesLocalDispatchAndHandleOneRunsHandlers(t *testing.T) {
	t.Parallel()
	tr := &captureTransport{}
	var local atomic.Int32
	ta := newTestApp(t, []string{"MARTY_EVENTS_MAX_ATTEMPTS=2", "MARTY_EVENTS_BACKOFF_INITIAL=1s"},
		fx.Supply(fx.Annotate(tr, fx.As(new(fxevents.Transport)))),
		fxevents.AsHandler(fxevents.HandlerFunc("billing", func(_ context.Context, e OrderCreated) error {
			local.Add(1)
			if e.Seq < 0 {
				return errors.New("negative")
			}
			return nil
		})),
	)
	ctx := context.Background()
	require.NoError(t, ta.bus.Publish(ctx, OrderCreated{OrderID: "o1", Seq: 1}, OrderCreated{OrderID: "o1", Seq: -1}))
	require.Len(t, tr.envs, 2)
	require.Equal(t, int32(0), local.Load(), "with a transport, Publish does not dispatch locally")
	require.Equal(t, 2.0, metric(t, ta.reg, "marty_events_published_total", map[string]string{"type": "orders.order_created"}))

	tr.fail = errors.New("broker down")
	err := ta.bus.Publish(ctx, OrderCreated{OrderID: "o2"})
	require.ErrorContains(t, err, "fxevents: transport publish: broker down")
	require.Equal(t, 2.0, metric(t, ta.reg, "marty_events_published_total", map[string]string{"type": "orders.order_created"}),
		"a refused event is not counted published")

	// What a transport's consumer does with what it receives.
	require.Equal(t, []fxevents.HandlerInfo{{Name: "billing", EventTypes: []string{"orders.order_created"}}}, ta.disp.Handlers())
	require.Equal(t, fxevents.Result{}, ta.disp.HandleOne(ctx, "billing", tr.envs[0], 1))
	res := ta.disp.HandleOne(ctx, "billing", tr.envs[1], 1)
	require.EqualError(t, res.Err, "negative")
	require.True(t, res.Retry)
	require.InDelta(t, float64(1e9), float64(res.RetryAfter), 0.2e9)
	require.False(t, res.DeadLettered)
	res = ta.disp.HandleOne(ctx, "billing", tr.envs[1], 2)
	require.False(t, res.Retry)
	require.True(t, res.DeadLettered)
	dls, _ := ta.disp.DeadLetters().List(ctx, 0)
	require.Len(t, dls, 1)
	require.Equal(t, tr.envs[1].ID, dls[0].Envelope.ID)
	require.Equal(t, int32(3), local.Load())

	res = ta.disp.HandleOne(ctx, "nobody", tr.envs[0], 1)
	require.ErrorIs(t, res.Err, fxevents.ErrUnknownHandler)

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	res = ta.disp.HandleOne(cancelled, "billing", tr.envs[1], 2)
	require.True(t, res.Retry, "a delivery cut off by the context is retried, not dead-lettered")
}

func TestMalformedPayloadIsDeadLetteredWithoutRetry(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t, []string{"MARTY_EVENTS_MAX_ATTEMPTS=5"},
		fxevents.AsHandler(fxevents.HandlerFunc("billing", func(context.Context, OrderCreated) error { return nil })),
	)
	env := fxevents.Envelope{ID: "x", Type: "orders.order_created", Payload: []byte(`{"seq":"not a number"`)}
	res := ta.disp.HandleOne(context.Background(), "billing", env, 1)
	require.True(t, res.DeadLettered, "a payload that cannot decode will never succeed")
	require.ErrorContains(t, res.Err, "decode orders.order_created")
}

type protoEvent struct{ *wrapperspb.StringValue }

func (protoEvent) EventType() string { return "test.proto" }

func TestDefaultCodecJSONAndProtobufAndRegistryDecode(t *testing.T) {
	t.Parallel()
	codec := fxevents.DefaultCodec()
	env, err := fxevents.NewEnvelope("svc", protoEvent{wrapperspb.String("hello")}, codec)
	require.NoError(t, err)
	require.Equal(t, fxevents.ContentTypeProtobuf, env.ContentType())
	out := protoEvent{&wrapperspb.StringValue{}}
	require.NoError(t, codec.Decode(env.ContentType(), env.Payload, out))
	require.Equal(t, "hello", out.GetValue())
	require.ErrorContains(t, codec.Decode(fxevents.ContentTypeProtobuf, env.Payload, &OrderCreated{}), "not a proto.Message")
	require.ErrorContains(t, codec.Decode("text/csv", nil, &OrderCreated{}), "unsupported content type")

	env, err = fxevents.NewEnvelope("svc", OrderCreated{OrderID: "o1", Seq: 3}, codec)
	require.NoError(t, err)
	require.Nil(t, env.Metadata, "a JSON event carries no metadata by itself")
	require.Len(t, env.ID, 36)
	reg, err := fxevents.NewRegistry(OrderCreated{}, &OrderShipped{})
	require.NoError(t, err)
	ev, err := reg.Decode(env, codec)
	require.NoError(t, err)
	require.Equal(t, OrderCreated{OrderID: "o1", Seq: 3}, ev)
	env2, err := fxevents.NewEnvelope("svc", &OrderShipped{OrderID: "o2"}, codec)
	require.NoError(t, err)
	ev, err = reg.Decode(env2, codec)
	require.NoError(t, err)
	require.Equal(t, &OrderShipped{OrderID: "o2"}, ev)
	_, err = reg.Decode(fxevents.Envelope{Type: "nope"}, codec)
	require.ErrorContains(t, err, `"nope" is not registered`)

	type other struct{ OrderCreated }
	require.ErrorContains(t, reg.Register(other{}), "is both")
}

func TestOutboxRelaysToTheTransportAndDeadLettersWhatItRefuses(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		tr := &captureTransport{}
		var local atomic.Int32
		oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_POLL_INTERVAL=20ms", "MARTY_EVENTS_MAX_ATTEMPTS=2",
			"MARTY_EVENTS_BACKOFF_INITIAL=10ms"},
			fx.Supply(fx.Annotate(tr, fx.As(new(fxevents.Transport)))),
			fxevents.AsHandler(fxevents.HandlerFunc("local", func(context.Context, OrderCreated) error { local.Add(1); return nil })))
		ctx := context.Background()
		require.NoError(t, oa.bus.Publish(ctx, OrderCreated{OrderID: "a", Seq: 1}, OrderCreated{OrderID: "a", Seq: 2}))
		eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox") == 0 }, "relayed")
		tr.mu.Lock()
		require.Len(t, tr.envs, 2)
		require.Equal(t, "a", tr.envs[0].AggregateID)
		first, _ := decodeOrder(tr.envs[0])
		second, _ := decodeOrder(tr.envs[1])
		require.Equal(t, []int{1, 2}, []int{first.Seq, second.Seq})
		tr.fail = errors.New("broker down")
		tr.mu.Unlock()
		require.Zero(t, local.Load(), "with a transport the relay does not run local handlers")

		require.NoError(t, oa.bus.Publish(ctx, OrderCreated{OrderID: "b"}))
		eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox_dead") == 1 }, "dead after the max attempts")
		dls, err := oa.disp.DeadLetters().List(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, "", dls[0].Handler)
		require.Contains(t, dls[0].Error, "broker down")
	})
}

// outageTransport is down (its Publish blocks until the context ends, as a
// client waiting for its reconnection does) until up is set.
type outageTransport struct {
	captureTransport
	up    atomic.Bool
	calls atomic.Int32
}

func (o *outageTransport) Publish(ctx context.Context, envs ...fxevents.Envelope) error {
	o.calls.Add(1)
	if !o.up.Load() {
		<-ctx.Done()
		return fmt.Errorf("waiting for the broker: %w: %w", fxevents.ErrTransportUnavailable, ctx.Err())
	}
	return o.captureTransport.Publish(ctx, envs...)
}

// A broker outage delays outbox events and never dead-letters them: the
// relay waits at most HandlerTimeout per batch, leaves the rows as they were
// (no attempt counted) and ends its transaction, then delivers everything
// once the broker is back.
func TestOutboxRelayWaitsOutATransportOutage(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		tr := &outageTransport{}
		oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_HANDLER_TIMEOUT=100ms", "MARTY_EVENTS_MAX_ATTEMPTS=2",
			"MARTY_EVENTS_POLL_INTERVAL=50ms", "MARTY_EVENTS_BACKOFF_INITIAL=10ms"},
			fx.Supply(fx.Annotate(tr, fx.As(new(fxevents.Transport)))))
		ctx := context.Background()
		for i := range 20 {
			require.NoError(t, oa.uow.Do(ctx, func(ctx context.Context) error {
				return oa.bus.Publish(ctx, OrderCreated{OrderID: fmt.Sprint("o", i%3), Seq: i})
			}))
		}
		// Many more tries than MaxAttempts while the broker is down.
		eventually(t, func() bool { return tr.calls.Load() >= 6 }, "the relay keeps trying")
		var attempts, dead int64
		require.NoError(t, oa.db.Raw("SELECT COALESCE(MAX(attempts), -1) FROM marty_outbox").Scan(&attempts).Error)
		require.Zero(t, attempts, "an outage counts no attempt")
		require.Equal(t, int64(20), countRows(t, oa.db, "marty_outbox"))
		require.NoError(t, oa.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
		require.Zero(t, dead, "nothing dead-lettered by the outage")
		if b.name == "postgres" {
			var open int64
			require.NoError(t, oa.db.Raw(`SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()
				AND xact_start < now() - interval '2 seconds'`).Scan(&open).Error)
			require.Zero(t, open, "no relay transaction stays open through the outage")
		}

		tr.up.Store(true)
		eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox") == 0 }, "the outbox drains once the broker is back")
		tr.mu.Lock()
		defer tr.mu.Unlock()
		require.Len(t, tr.envs, 20)
		last := map[string]int{}
		for _, env := range tr.envs {
			var e OrderCreated
			require.NoError(t, json.Unmarshal(env.Payload, &e))
			if prev, ok := last[e.OrderID]; ok {
				require.Greater(t, e.Seq, prev, "aggregate order holds after the outage")
			}
			last[e.OrderID] = e.Seq
		}
	})
}

// ctxTransport refuses to publish with a context that has ended, as a
// broker client does.
type ctxTransport struct{ captureTransport }

func (c *ctxTransport) Publish(ctx context.Context, envs ...fxevents.Envelope) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return c.captureTransport.Publish(ctx, envs...)
}

// With MARTY_EVENTS_HANDLER_TIMEOUT=0 (no bound) the relay waits for the
// transport as long as it takes, and delivers.
func TestOutboxRelayWithoutHandlerTimeoutDelivers(t *testing.T) {
	t.Parallel()
	tr := &ctxTransport{}
	oa := newOutboxApp(t, sqliteBackend(t), []string{"MARTY_EVENTS_HANDLER_TIMEOUT=0", "MARTY_EVENTS_POLL_INTERVAL=50ms"},
		fx.Supply(fx.Annotate(tr, fx.As(new(fxevents.Transport)))))
	require.NoError(t, oa.uow.Do(context.Background(), func(ctx context.Context) error {
		return oa.bus.Publish(ctx, OrderCreated{OrderID: "o1", Seq: 1}, OrderCreated{OrderID: "o1", Seq: 2})
	}))
	eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox") == 0 }, "delivered to the transport")
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Len(t, tr.envs, 2)
}

// refusingTransport refuses its call number refuse (1-based) with an
// ordinary error, which counts as a failed attempt, and records every call.
type refusingTransport struct {
	captureTransport
	refuse int32
	calls  atomic.Int32
}

func (r *refusingTransport) Publish(ctx context.Context, envs ...fxevents.Envelope) error {
	if r.calls.Add(1) == r.refuse {
		return errors.New("refused once")
	}
	return r.captureTransport.Publish(ctx, envs...)
}

// On Postgres a relay transaction hands a transport several batches in a
// pipeline (the next batch is read while one is published). When the
// broker refuses a batch in the middle, the batches it accepted before are
// deleted and not published again, the refused one is retried, the rows
// after it are not published ahead of it, and every event arrives once, in
// its aggregate's order.
func TestOutboxRelayPipelineToTheTransportKeepsOrderWhenABatchIsRefused(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		tr := &refusingTransport{refuse: 3}
		oa := newOutboxApp(t, b, []string{"MARTY_EVENTS_BATCH_SIZE=4", "MARTY_EVENTS_PARTITIONS=1", "MARTY_EVENTS_RELAY_WORKERS=1",
			"MARTY_EVENTS_POLL_INTERVAL=20ms", "MARTY_EVENTS_MAX_ATTEMPTS=3", "MARTY_EVENTS_BACKOFF_INITIAL=10ms"},
			fx.Supply(fx.Annotate(tr, fx.As(new(fxevents.Transport)))))
		const n = 30
		evs := make([]fxevents.Event, n)
		for i := range evs {
			evs[i] = OrderCreated{OrderID: fmt.Sprint("o", i%3), Seq: i}
		}
		require.NoError(t, oa.uow.Do(context.Background(), func(ctx context.Context) error { return oa.bus.Publish(ctx, evs...) }))
		eventually(t, func() bool { return countRows(t, oa.db, "marty_outbox") == 0 }, "relayed")
		require.Zero(t, countRows(t, oa.db, "marty_outbox_dead"))
		require.GreaterOrEqual(t, tr.calls.Load(), int32(n/4+1), "batches of 4, one of them refused and retried")
		tr.mu.Lock()
		defer tr.mu.Unlock()
		require.Len(t, tr.envs, n, "every event published once: accepted batches are not sent again")
		seen := map[string]bool{}
		last := map[string]int{}
		for _, env := range tr.envs {
			require.False(t, seen[env.ID], "event %s published twice", env.ID)
			seen[env.ID] = true
			e, err := decodeOrder(env)
			require.NoError(t, err)
			if prev, ok := last[e.OrderID]; ok {
				require.Greater(t, e.Seq, prev, "aggregate %s out of order", e.OrderID)
			}
			last[e.OrderID] = e.Seq
		}
	})
}
