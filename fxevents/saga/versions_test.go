package saga_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
)

// OrderPlacedV1 is the old build's event: a plain amount.
type OrderPlacedV1 struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
}

func (OrderPlacedV1) EventType() string     { return "test.order_placed" }
func (e OrderPlacedV1) AggregateID() string { return e.OrderID }

// Money is the new build's amount.
type Money struct {
	Units    int64  `json:"units"`
	Currency string `json:"currency"`
}

// OrderPlacedV2 is the new build's event: the amount became a Money.
type OrderPlacedV2 struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Total    Money  `json:"total"`
}

func (OrderPlacedV2) EventType() string     { return "test.order_placed" }
func (OrderPlacedV2) EventVersion() int     { return 2 }
func (e OrderPlacedV2) AggregateID() string { return e.OrderID }

// orderPlacedV1to2 is the upcaster the new build registers.
var orderPlacedV1to2 = fxevents.Upcaster{Type: "test.order_placed", From: 1, Upcast: func(p []byte) ([]byte, error) {
	var v1 OrderPlacedV1
	if err := json.Unmarshal(p, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(OrderPlacedV2{OrderID: v1.OrderID, Customer: v1.Customer, Total: Money{Units: v1.Amount, Currency: "EUR"}})
}}

type stateV1 struct {
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
}

type stateV2 struct {
	Customer string `json:"customer"`
	Total    Money  `json:"total"`
	Paid     bool   `json:"paid"`
}

func oldBuild() *saga.Definition[stateV1] {
	d := saga.New[stateV1]("order")
	saga.Start(d, func(e OrderPlacedV1) string { return e.OrderID }, func(s *saga.Step[stateV1], e OrderPlacedV1) error {
		s.State.Customer, s.State.Amount = e.Customer, e.Amount
		return nil
	})
	return d
}

func newBuild() *saga.Definition[stateV2] {
	d := saga.New[stateV2]("order").StateVersion(2, func(from int, state []byte) ([]byte, error) {
		var v1 stateV1
		if err := json.Unmarshal(state, &v1); err != nil {
			return nil, err
		}
		return json.Marshal(stateV2{Customer: v1.Customer, Total: Money{Units: v1.Amount, Currency: "EUR"}})
	})
	saga.Start(d, func(e OrderPlacedV2) string { return e.OrderID }, func(s *saga.Step[stateV2], e OrderPlacedV2) error {
		s.State.Customer, s.State.Total = e.Customer, e.Total
		return nil
	})
	saga.On(d, func(e PaymentReserved) string { return e.OrderID }, func(s *saga.Step[stateV2], e PaymentReserved) error {
		s.State.Paid = true
		s.Complete()
		return nil
	})
	return d
}

func TestSagaV1EventAndStateFromBeforeADeployAreUpcastAfterIt(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		// Before the deploy: the old build starts saga o-1 (state v1), and
		// publishes o-2's event that nobody handles before the deploy.
		old := newApp(t, b, nil, oldBuild())
		old.publish(t, OrderPlacedV1{OrderID: "v-1", Customer: "ann", Amount: 700})
		old.waitStatus(t, "v-1", saga.StatusRunning)
		old.stop(t)
		oldPub := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false"}, nil)
		oldPub.publish(t, OrderPlacedV1{OrderID: "v-2", Customer: "ben", Amount: 900})
		var meta string
		require.NoError(t, oldPub.db.Raw("SELECT metadata FROM marty_outbox WHERE aggregate_id = 'v-2'").Scan(&meta).Error)
		require.NotContains(t, meta, fxevents.MetaEventVersion, "a v1 event carries no version")
		oldPub.stop(t)

		// After the deploy: the new build reads both.
		nb := newBuild()
		a := newApp(t, b, nil, nb, saga.AsUpcaster(orderPlacedV1to2))
		a.waitStatus(t, "v-2", saga.StatusRunning)
		st, in, err := nb.Load(ctx, a.rt, "v-2")
		require.NoError(t, err)
		require.Equal(t, stateV2{Customer: "ben", Total: Money{Units: 900, Currency: "EUR"}}, *st, "the v1 event was upcast")
		require.Equal(t, 2, in.StateVersion)

		st, in, err = nb.Load(ctx, a.rt, "v-1")
		require.NoError(t, err)
		require.Equal(t, 1, in.StateVersion, "stored by the old build")
		require.Equal(t, stateV2{Customer: "ann", Total: Money{Units: 700, Currency: "EUR"}}, *st, "upgraded on read")

		a.publish(t, PaymentReserved{OrderID: "v-1"})
		a.waitStatus(t, "v-1", saga.StatusCompleted)
		st, in, err = nb.Load(ctx, a.rt, "v-1")
		require.NoError(t, err)
		require.Equal(t, 2, in.StateVersion, "stored back at the new version")
		require.Equal(t, stateV2{Customer: "ann", Total: Money{Units: 700, Currency: "EUR"}, Paid: true}, *st)

		// A v2 event says so and is not upcast again.
		a.publish(t, OrderPlacedV2{OrderID: "v-3", Customer: "cy", Total: Money{Units: 5, Currency: "USD"}})
		a.waitStatus(t, "v-3", saga.StatusRunning)
		st, _, err = nb.Load(ctx, a.rt, "v-3")
		require.NoError(t, err)
		require.Equal(t, Money{Units: 5, Currency: "USD"}, st.Total)
	})
}

func TestUpcastersChainAndRejectDuplicates(t *testing.T) {
	t.Parallel()
	v2to3 := fxevents.Upcaster{Type: "test.order_placed", From: 2, Upcast: func(p []byte) ([]byte, error) {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return nil, err
		}
		m["channel"] = "web"
		return json.Marshal(m)
	}}
	u, err := fxevents.NewUpcasters(orderPlacedV1to2, v2to3)
	require.NoError(t, err)
	env, err := fxevents.NewEnvelope("orders", OrderPlacedV1{OrderID: "x", Amount: 3}, fxevents.DefaultCodec())
	require.NoError(t, err)
	require.Equal(t, 1, env.Version())
	up, err := u.Upcast(env)
	require.NoError(t, err)
	require.Equal(t, 3, up.Version())
	require.JSONEq(t, `{"order_id":"x","customer":"","total":{"units":3,"currency":"EUR"},"channel":"web"}`, string(up.Payload))
	require.Nil(t, env.Metadata, "the original envelope is untouched")

	_, err = fxevents.NewUpcasters(orderPlacedV1to2, orderPlacedV1to2)
	require.ErrorContains(t, err, "two upcasters")

	// The middleware does the same for any handler.
	var got OrderPlacedV2
	h := fxevents.UpcastMiddleware(u)(fxevents.HandlerFunc("h", func(_ context.Context, e OrderPlacedV2) error {
		got = e
		return nil
	}))
	require.NoError(t, h.Handle(context.Background(), env))
	require.Equal(t, Money{Units: 3, Currency: "EUR"}, got.Total)
}
