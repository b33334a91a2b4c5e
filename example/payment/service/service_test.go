package service_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/example/events"
	"github.com/martyfx/martyfx/example/payment/service"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxtest"
)

func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }

// The fake provider decides by customer id, and each decision is recorded
// and answered (or, for no answer, only recorded).
func TestReserveByCustomer(t *testing.T) {
	t.Parallel()
	var bus fxevents.Bus
	app := fxtest.New(t, service.Module, fx.Populate(&bus))
	require.NoError(t, bus.Publish(t.Context(),
		events.ReservePayment{OrderID: "o-1", CustomerID: "alice", AmountCents: 2500},
		events.ReservePayment{OrderID: "o-2", CustomerID: "declined-bob", AmountCents: 597},
		events.ReservePayment{OrderID: "o-3", CustomerID: "slow-carol", AmountCents: 4500},
	))
	app.WaitHandled()

	reserved := fxtest.RequirePublished[events.PaymentReserved](app)
	require.Equal(t, []events.PaymentReserved{{OrderID: "o-1", AmountCents: 2500}}, reserved)
	declined := fxtest.RequirePublished[events.PaymentDeclined](app)
	require.Equal(t, []events.PaymentDeclined{{OrderID: "o-2", Reason: "card declined"}}, declined)

	var resp service.ListResponse
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/payments", &resp))
	require.Len(t, resp.Payments, 3)
	got := map[string][2]string{}
	for _, p := range resp.Payments {
		got[p.OrderID] = [2]string{p.Status, p.Answer}
	}
	require.Equal(t, map[string][2]string{
		"o-1": {service.StatusReserved, "reserved"},
		"o-2": {service.StatusDeclined, "declined: card declined"},
		"o-3": {service.StatusPending, "no answer"},
	}, got)

	// Releasing works whatever the provider answered.
	require.NoError(t, bus.Publish(t.Context(),
		events.ReleasePayment{OrderID: "o-2", Reason: "payment declined"},
		events.ReleasePayment{OrderID: "o-3", Reason: "payment not received in time"},
	))
	app.WaitHandled()
	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/payments?customer_id=slow-carol", &resp))
	require.Len(t, resp.Payments, 1)
	require.Equal(t, service.StatusReleased, resp.Payments[0].Status)
	require.Equal(t, "no answer", resp.Payments[0].Answer)
	require.Equal(t, "payment not received in time", resp.Payments[0].ReleaseReason)
	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/payments?order_id=o-1", &resp))
	require.Len(t, resp.Payments, 1)
	require.Equal(t, service.StatusReserved, resp.Payments[0].Status, "o-1 was not released")

	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/payments?page_size=2", &resp))
	require.Len(t, resp.Payments, 2)
	require.NotEmpty(t, resp.NextPageToken)
	next := resp.NextPageToken
	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/payments?page_size=2&page_token="+next, &resp))
	require.Len(t, resp.Payments, 1)
	require.Empty(t, resp.NextPageToken)

	var body string
	require.Equal(t, http.StatusBadRequest, app.HTTP().Get("/v1/payments?page_size=0", &body), body)
	require.Equal(t, http.StatusBadRequest, app.HTTP().Get("/v1/payments?page_token=zzz", &body), body)
}

// A redelivered command (same envelope id) takes effect once: one row, one
// answer. A second, different command for the same order changes nothing.
func TestRedeliveredReserveTakesEffectOnce(t *testing.T) {
	t.Parallel()
	var (
		d     *fxevents.Dispatcher
		codec fxevents.Codec
	)
	app := fxtest.New(t, service.Module, fx.Populate(&d, &codec))
	env, err := fxevents.NewEnvelope("orders", events.ReservePayment{OrderID: "o-9", CustomerID: "dan", AmountCents: 100}, codec)
	require.NoError(t, err)
	for attempt := 1; attempt <= 3; attempt++ {
		require.NoError(t, d.HandleOne(t.Context(), service.HandlerReserve, env, attempt).Err, "delivery %d", attempt)
	}
	again, err := fxevents.NewEnvelope("orders", events.ReservePayment{OrderID: "o-9", CustomerID: "dan", AmountCents: 100}, codec)
	require.NoError(t, err)
	require.NoError(t, d.HandleOne(t.Context(), service.HandlerReserve, again, 1).Err)

	require.Len(t, fxtest.RequirePublished[events.PaymentReserved](app), 1)
	var n int64
	require.NoError(t, app.DB().Model(&service.Payment{}).Where("order_id = ?", "o-9").Count(&n).Error)
	require.Equal(t, int64(1), n)
}

// A release that arrives before its reservation (the customer cancelled at
// once, and the commands came over different consumers) leaves a released
// row, and the late reservation reserves nothing and answers nothing.
func TestReleaseBeforeReserve(t *testing.T) {
	t.Parallel()
	var bus fxevents.Bus
	app := fxtest.New(t, service.Module, fx.Populate(&bus))
	require.NoError(t, bus.Publish(t.Context(), events.ReleasePayment{OrderID: "o-5", Reason: "cancelled by the customer"}))
	require.NoError(t, bus.Publish(t.Context(), events.ReservePayment{OrderID: "o-5", CustomerID: "erin", AmountCents: 700}))
	app.WaitHandled()

	var p service.Payment
	require.NoError(t, app.DB().Where("order_id = ?", "o-5").Take(&p).Error)
	require.Equal(t, service.StatusReleased, p.Status)
	require.Equal(t, "cancelled by the customer", p.ReleaseReason)
	for _, e := range app.Events() {
		require.NotEqual(t, events.TypePaymentReserved, e.Envelope.Type, "no answer for a released order")
	}
}

// A payload that cannot be decoded is dead-lettered at once, not retried.
func TestUndecodableCommandIsDeadLettered(t *testing.T) {
	t.Parallel()
	var d *fxevents.Dispatcher
	app := fxtest.New(t, service.Module, fx.Populate(&d))
	env := fxevents.Envelope{ID: "bad-1", Type: events.TypeReservePayment, Source: "orders", Payload: []byte("{not json")}
	res := d.HandleOne(t.Context(), service.HandlerReserve, env, 1)
	require.True(t, res.DeadLettered, "%+v", res)
	var n int64
	require.NoError(t, app.DB().Model(&service.Payment{}).Count(&n).Error)
	require.Zero(t, n)
}

func TestFakeProvider(t *testing.T) {
	t.Parallel()
	p := service.FakeProvider{}
	require.Equal(t, service.StatusReserved, p.Reserve(t.Context(), "alice", 1).Status)
	require.Equal(t, service.Decision{Status: service.StatusDeclined, Reason: "card declined"}, p.Reserve(t.Context(), "declined-bob", 1))
	require.Equal(t, service.StatusPending, p.Reserve(t.Context(), "slow-carol", 1).Status)
	require.Equal(t, service.StatusReserved, p.Reserve(t.Context(), "bob-declined-", 1).Status, "a prefix, not a substring")
}
