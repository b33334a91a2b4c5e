package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/example/events"
	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
	payment "github.com/martyfx/martyfx/example/payment/service"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxtest"
)

// sagaApp is the one-command composition (orders, its saga, the notifier
// and payment in process, events through the outbox) on SQLite, or on a
// fresh Postgres database with pg.
type sagaApp struct {
	*fxtest.App
	rpc ordersv1.OrderServiceClient
	rt  *saga.Runtime
	db  *gorm.DB
}

func newSagaApp(t *testing.T, pg bool, deadline string) *sagaApp {
	t.Helper()
	var (
		rt *saga.Runtime
		db *gorm.DB
	)
	opts := []fx.Option{
		service.Module, service.SagaModule, notifier.Module, payment.Module,
		fxtest.Env("MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=50ms",
			"MARTY_SAGA_POLL_INTERVAL=50ms", "MARTY_ORDERS_PAYMENT_DEADLINE="+deadline),
		fx.Populate(&rt, &db),
	}
	if pg {
		opts = append(opts, fxtest.Postgres(t)) // skips without MARTY_TEST_POSTGRES_DSN
	}
	app := fxtest.New(t, opts...)
	return &sagaApp{App: app, rpc: ordersv1.NewOrderServiceClient(app.GRPC()), rt: rt, db: db}
}

func (a *sagaApp) create(t *testing.T, customer string) *ordersv1.Order {
	t.Helper()
	o, err := a.rpc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{CustomerId: customer,
		Items: []*ordersv1.LineItem{{Sku: "book", Quantity: 2, UnitPriceCents: 1250}}})
	require.NoError(t, err)
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_PENDING, o.GetStatus())
	return o
}

// waitSaga waits until the order's saga has status, and returns its
// history's steps.
func (a *sagaApp) waitSaga(t *testing.T, id string, status saga.Status) []string {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		in, err := a.rt.Get(context.Background(), service.SagaName, id)
		if assert.NoError(c, err) {
			assert.Equal(c, status, in.Status)
		}
	}, 30*time.Second, 20*time.Millisecond)
	hist, err := a.rt.History(t.Context(), service.SagaName, id)
	require.NoError(t, err)
	steps := make([]string, len(hist))
	for i, h := range hist {
		steps[i] = h.Step + " -> " + string(h.Status)
	}
	return steps
}

func (a *sagaApp) order(t *testing.T, id string) *ordersv1.Order {
	t.Helper()
	o, err := a.rpc.GetOrder(t.Context(), &ordersv1.GetOrderRequest{Id: id})
	require.NoError(t, err)
	return o
}

// payment waits for the order's payment row to reach status.
func (a *sagaApp) payment(t *testing.T, id, status string) payment.Payment {
	t.Helper()
	var p payment.Payment
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		p = payment.Payment{}
		if assert.NoError(c, a.db.Where("order_id = ?", id).Take(&p).Error) {
			assert.Equal(c, status, p.Status)
		}
	}, 30*time.Second, 20*time.Millisecond)
	return p
}

// notifications waits until the order has n notifications, lets the
// handlers finish whatever is in flight, and returns their event types.
func (a *sagaApp) notifications(t *testing.T, id string, n int) []string {
	t.Helper()
	load := func() []string {
		var rows []notifier.Notification
		require.NoError(t, a.db.Where("order_id = ?", id).Order("id").Find(&rows).Error)
		out := make([]string, len(rows))
		for i, r := range rows {
			out[i] = r.EventType
		}
		return out
	}
	require.Eventually(t, func() bool { return len(load()) >= n }, 30*time.Second, 20*time.Millisecond)
	a.WaitHandled()
	return load()
}

func forEachDB(t *testing.T, run func(t *testing.T, pg bool)) {
	for _, pg := range []bool{false, true} {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			run(t, pg)
		})
	}
}

// Payment reserved: the order is confirmed, the saga completes, the
// reservation stays, the customer hears "received" then "confirmed".
func TestSagaPaymentReservedConfirms(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, pg bool) {
		a := newSagaApp(t, pg, "15m")
		o := a.create(t, "alice")
		steps := a.waitSaga(t, o.GetId(), saga.StatusCompleted)
		require.Equal(t, []string{
			"on " + events.TypeOrderCreated + " -> running",
			"on " + events.TypePaymentReserved + " -> completed",
		}, steps)
		got := a.order(t, o.GetId())
		require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, got.GetStatus())
		require.Empty(t, got.GetCancelReason())
		p := a.payment(t, o.GetId(), payment.StatusReserved)
		require.Equal(t, int64(2500), p.AmountCents)
		require.Equal(t, []string{events.TypeOrderCreated, events.TypeOrderConfirmed}, a.notifications(t, o.GetId(), 2))
		require.Equal(t, payment.StatusReserved, a.payment(t, o.GetId(), payment.StatusReserved).Status, "nothing released it")
		require.Equal(t, 1.0, a.Metric(service.MetricOrders, "action", "confirmed"))

		// Cancelling a confirmed order releases its reservation.
		c, err := a.rpc.CancelOrder(t.Context(), &ordersv1.CancelOrderRequest{Id: o.GetId(), Reason: "changed my mind"})
		require.NoError(t, err)
		require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, c.GetStatus())
		p = a.payment(t, o.GetId(), payment.StatusReleased)
		require.Equal(t, "order cancelled", p.ReleaseReason)
		require.Equal(t, []string{events.TypeOrderCreated, events.TypeOrderConfirmed, events.TypeOrderCancelled},
			a.notifications(t, o.GetId(), 3))
	})
}

// Payment declined: the order is cancelled ("payment declined"), the
// compensation releases the payment, the customer is told once.
func TestSagaPaymentDeclinedCancelsAndReleases(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, pg bool) {
		a := newSagaApp(t, pg, "15m")
		o := a.create(t, "declined-bob")
		steps := a.waitSaga(t, o.GetId(), saga.StatusCompensated)
		require.Equal(t, []string{
			"on " + events.TypeOrderCreated + " -> running",
			"on " + events.TypePaymentDeclined + " -> compensating",
			"compensate " + service.CompensationReleasePayment + " -> compensated",
		}, steps)
		got := a.order(t, o.GetId())
		require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, got.GetStatus())
		require.Equal(t, service.ReasonPaymentDeclined, got.GetCancelReason())
		p := a.payment(t, o.GetId(), payment.StatusReleased)
		require.Equal(t, "declined: card declined", p.Answer)
		require.Equal(t, service.ReasonPaymentDeclined, p.ReleaseReason)
		require.Equal(t, []string{events.TypeOrderCreated, events.TypeOrderCancelled}, a.notifications(t, o.GetId(), 2),
			"one cancellation notice")
		var msg string
		require.NoError(t, a.db.Model(&notifier.Notification{}).Where("order_id = ? AND event_type = ?", o.GetId(), events.TypeOrderCancelled).
			Pluck("message", &msg).Error)
		require.Equal(t, "Dear declined-bob, your order "+o.GetId()+" was cancelled: payment declined.", msg)
	})
}

// No answer: the deadline cancels the order ("payment not received in
// time"), releases the pending request and tells the customer once.
func TestSagaPaymentDeadlineCancelsAndReleases(t *testing.T) {
	t.Parallel()
	forEachDB(t, func(t *testing.T, pg bool) {
		a := newSagaApp(t, pg, "1s")
		o := a.create(t, "slow-carol")
		steps := a.waitSaga(t, o.GetId(), saga.StatusCompensated)
		require.Equal(t, []string{
			"on " + events.TypeOrderCreated + " -> running",
			"timer " + service.TimerPaymentDeadline + " -> compensating",
			"compensate " + service.CompensationReleasePayment + " -> compensated",
		}, steps)
		got := a.order(t, o.GetId())
		require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, got.GetStatus())
		require.Equal(t, service.ReasonPaymentTimeout, got.GetCancelReason())
		p := a.payment(t, o.GetId(), payment.StatusReleased)
		require.Equal(t, "no answer", p.Answer)
		require.Equal(t, service.ReasonPaymentTimeout, p.ReleaseReason)
		require.Equal(t, []string{events.TypeOrderCreated, events.TypeOrderCancelled}, a.notifications(t, o.GetId(), 2))
	})
}

// The customer cancels while the saga waits for the payment: the saga
// fails and releases the payment; the deadline never fires.
func TestSagaCustomerCancelReleases(t *testing.T) {
	t.Parallel()
	a := newSagaApp(t, false, "15m")
	o := a.create(t, "slow-dave")
	a.payment(t, o.GetId(), payment.StatusPending)
	_, err := a.rpc.CancelOrder(t.Context(), &ordersv1.CancelOrderRequest{Id: o.GetId(), Reason: "too slow"})
	require.NoError(t, err)
	steps := a.waitSaga(t, o.GetId(), saga.StatusCompensated)
	require.Equal(t, []string{
		"on " + events.TypeOrderCreated + " -> running",
		"on " + events.TypeOrderCancelled + " -> compensating",
		"compensate " + service.CompensationReleasePayment + " -> compensated",
	}, steps)
	p := a.payment(t, o.GetId(), payment.StatusReleased)
	require.Equal(t, "cancelled by the customer", p.ReleaseReason)
	require.Equal(t, "too slow", a.order(t, o.GetId()).GetCancelReason())
	require.Equal(t, []string{events.TypeOrderCreated, events.TypeOrderCancelled}, a.notifications(t, o.GetId(), 2))
}

// The deadline is MARTY_ORDERS_PAYMENT_DEADLINE, 15 minutes by default; a
// deadline that is not positive fails the start naming the variable.
func TestSagaDeadlineConfig(t *testing.T) {
	t.Parallel()
	load := func(env ...string) (service.SagaConfig, error) {
		src, err := fxcore.NewSourceFrom("", env)
		require.NoError(t, err)
		return fxcore.Load(src, "orders", service.DefaultSagaConfig())
	}
	cfg, err := load()
	require.NoError(t, err)
	require.Equal(t, 15*time.Minute, cfg.PaymentDeadline)
	cfg, err = load("MARTY_ORDERS_PAYMENT_DEADLINE=10s")
	require.NoError(t, err)
	require.Equal(t, 10*time.Second, cfg.PaymentDeadline)
	_, err = load("MARTY_ORDERS_PAYMENT_DEADLINE=0s")
	require.ErrorContains(t, err, "MARTY_ORDERS_PAYMENT_DEADLINE")
}
