package service_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/example/events"
	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
	payment "github.com/martyfx/martyfx/example/payment/service"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxtest"
)

// natsEnv is a stream and subject prefix of the test's own on the NATS
// server at MARTY_TEST_NATS_URL, deleted at cleanup (after the apps stop:
// the cleanup is registered before them).
func natsEnv(t *testing.T) []string {
	t.Helper()
	fxtest.Integration(t, fxtest.NeedNATS)
	url := os.Getenv(fxtest.EnvNATSURL)
	var b [4]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	stream, prefix := "ORDERSAGA_"+id, "ordersaga"+id
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = js.DeleteStream(ctx, stream)
		}
	})
	return []string{"MARTY_NATS_URL=" + url, "MARTY_NATS_STREAM=" + stream, "MARTY_NATS_SUBJECT_PREFIX=" + prefix,
		"MARTY_NATS_STORAGE=memory", "MARTY_EVENTS_POLL_INTERVAL=50ms", "MARTY_SAGA_POLL_INTERVAL=50ms"}
}

// The distributed run: orders (with its saga), payment and the notifier as
// three apps, each on its own Postgres database, exchanging every message
// over NATS JetStream (orders and payment through their outboxes). The three
// outcomes end as in one process.
func TestSagaOverNATS(t *testing.T) {
	t.Parallel()
	env := natsEnv(t)
	orders := fxtest.New(t, service.Module, service.SagaModule, natsjs.Module, fxtest.Postgres(t),
		fxtest.Env(append([]string{"MARTY_SERVICE_NAME=orders", "MARTY_EVENTS_BUS=outbox",
			"MARTY_ORDERS_PAYMENT_DEADLINE=8s"}, env...)...))
	pay := fxtest.New(t, payment.Module, natsjs.Module, fxtest.Postgres(t),
		fxtest.Env(append([]string{"MARTY_SERVICE_NAME=payment", "MARTY_EVENTS_BUS=outbox"}, env...)...))
	notes := fxtest.New(t, notifier.Module, natsjs.Module, fxtest.Postgres(t),
		fxtest.Env(append([]string{"MARTY_SERVICE_NAME=notifier"}, env...)...))
	rpc := ordersv1.NewOrderServiceClient(orders.GRPC())

	ids := map[string]string{}
	for _, customer := range []string{"alice", "declined-bob", "slow-carol"} {
		o, err := rpc.CreateOrder(t.Context(), &ordersv1.CreateOrderRequest{CustomerId: customer,
			Items: []*ordersv1.LineItem{{Sku: "book", Quantity: 1, UnitPriceCents: 990}}})
		require.NoError(t, err)
		ids[customer] = o.GetId()
	}

	type outcome struct {
		status        ordersv1.OrderStatus
		reason        string
		payment       string
		notifications []string
	}
	want := map[string]outcome{
		"alice": {ordersv1.OrderStatus_ORDER_STATUS_CONFIRMED, "", payment.StatusReserved,
			[]string{events.TypeOrderCreated, events.TypeOrderConfirmed}},
		"declined-bob": {ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, service.ReasonPaymentDeclined, payment.StatusReleased,
			[]string{events.TypeOrderCreated, events.TypeOrderCancelled}},
		"slow-carol": {ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, service.ReasonPaymentTimeout, payment.StatusReleased,
			[]string{events.TypeOrderCreated, events.TypeOrderCancelled}},
	}
	for customer, w := range want {
		id := ids[customer]
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			o, err := rpc.GetOrder(context.Background(), &ordersv1.GetOrderRequest{Id: id})
			if !assert.NoError(c, err) {
				return
			}
			assert.Equal(c, w.status, o.GetStatus(), customer)
			assert.Equal(c, w.reason, o.GetCancelReason(), customer)
			var p payment.Payment
			if assert.NoError(c, pay.DB().Where("order_id = ?", id).Take(&p).Error) {
				assert.Equal(c, w.payment, p.Status, customer)
			}
			var types []string
			assert.NoError(c, notes.DB().Model(&notifier.Notification{}).Where("order_id = ?", id).Order("id").
				Pluck("event_type", &types).Error)
			assert.Equal(c, w.notifications, types, customer)
		}, 60*time.Second, 50*time.Millisecond, customer)
	}
	// Once everything in flight is handled, each notice is still there once.
	notes.WaitHandled()
	for customer, w := range want {
		var n int64
		require.NoError(t, notes.DB().Model(&notifier.Notification{}).Where("order_id = ?", ids[customer]).Count(&n).Error)
		require.Equal(t, int64(len(w.notifications)), n, customer)
	}
}
