package service_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/example/events"
	"github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxtest"
)

func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }

func TestRecordsOnePerEvent(t *testing.T) {
	var bus fxevents.Bus
	app := fxtest.New(t, service.Module, fx.Populate(&bus))
	ctx := t.Context()
	require.NoError(t, bus.Publish(ctx,
		events.OrderCreated{OrderID: "o-1", CustomerID: "alice", TotalCents: 2699, Items: 2, CreatedAt: time.Now()},
		events.OrderCreated{OrderID: "o-2", CustomerID: "bob", TotalCents: 100, Items: 1, CreatedAt: time.Now()},
		events.OrderCancelled{OrderID: "o-1", CustomerID: "alice", Reason: "too slow", CancelledAt: time.Now()},
		events.OrderConfirmed{OrderID: "o-2", CustomerID: "bob", TotalCents: 100, ConfirmedAt: time.Now()},
	))
	app.WaitHandled()

	var resp service.ListResponse
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/notifications", &resp))
	require.Len(t, resp.Notifications, 4)
	require.Equal(t, "Dear alice, we received your order o-1 (2 lines, total 26.99).", resp.Notifications[0].Message)
	require.Equal(t, "Dear alice, your order o-1 was cancelled: too slow.", resp.Notifications[2].Message)
	require.Equal(t, "Dear bob, your order o-2 is confirmed: payment of 1.00 reserved.", resp.Notifications[3].Message)

	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/notifications?order_id=o-2", &resp))
	require.Len(t, resp.Notifications, 2)
	require.Equal(t, events.TypeOrderCreated, resp.Notifications[0].EventType)
	require.Equal(t, events.TypeOrderConfirmed, resp.Notifications[1].EventType)

	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/notifications?customer_id=alice", &resp))
	require.Len(t, resp.Notifications, 2)
	require.Equal(t, "o-1", resp.Notifications[1].OrderID)

	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/notifications?page_size=2", &resp))
	require.Len(t, resp.Notifications, 2)
	require.NotEmpty(t, resp.NextPageToken)
	token := resp.NextPageToken
	resp = service.ListResponse{}
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/notifications?page_size=2&page_token="+token, &resp))
	require.Len(t, resp.Notifications, 2)
	require.Empty(t, resp.NextPageToken)

	var body string
	require.Equal(t, http.StatusBadRequest, app.HTTP().Get("/v1/notifications?page_size=0", &body), body)
	require.Equal(t, http.StatusBadRequest, app.HTTP().Get("/v1/notifications?page_token=zzz", &body), body)
}

// A redelivered event (same envelope id, as NATS or the outbox relay may do
// after a crash) is recorded once: the inbox skips it.
func TestRedeliveryRecordedOnce(t *testing.T) {
	var (
		d     *fxevents.Dispatcher
		codec fxevents.Codec
	)
	app := fxtest.New(t, service.Module, fx.Populate(&d, &codec))
	env, err := fxevents.NewEnvelope("orders", events.OrderCreated{OrderID: "o-9", CustomerID: "dan", Items: 1}, codec)
	require.NoError(t, err)
	for attempt := 1; attempt <= 3; attempt++ {
		res := d.HandleOne(t.Context(), service.HandlerCreated, env, attempt)
		require.NoError(t, res.Err, "delivery %d", attempt)
	}
	var n int64
	require.NoError(t, app.DB().Model(&service.Notification{}).Where("order_id = ?", "o-9").Count(&n).Error)
	require.Equal(t, int64(1), n)

	// Another event of the same order is a new notification.
	env2, err := fxevents.NewEnvelope("orders", events.OrderCancelled{OrderID: "o-9", CustomerID: "dan"}, codec)
	require.NoError(t, err)
	require.NoError(t, d.HandleOne(t.Context(), service.HandlerCancelled, env2, 1).Err)
	require.NoError(t, app.DB().Model(&service.Notification{}).Where("order_id = ?", "o-9").Count(&n).Error)
	require.Equal(t, int64(2), n)
}

// A payload that cannot be decoded is dead-lettered at once, not retried.
func TestUndecodableIsDeadLettered(t *testing.T) {
	var d *fxevents.Dispatcher
	app := fxtest.New(t, service.Module, fx.Populate(&d))
	env := fxevents.Envelope{ID: "bad-1", Type: events.TypeOrderCreated, Source: "orders", OccurredAt: time.Now(), Payload: []byte("{not json")}
	res := d.HandleOne(t.Context(), service.HandlerCreated, env, 1)
	require.True(t, res.DeadLettered, "%+v", res)
	var n int64
	require.NoError(t, app.DB().Model(&service.Notification{}).Count(&n).Error)
	require.Zero(t, n)
}
