package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/martyfx/martyfx/example/events"
	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	notifier "github.com/martyfx/martyfx/example/notifier/service"
	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxmonitor/health"
	"github.com/martyfx/martyfx/fxtest"
)

func book(qty int32) *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{
		CustomerId: "alice",
		Items:      []*ordersv1.LineItem{{Sku: "book", Quantity: qty, UnitPriceCents: 1250}, {Sku: "pen", Quantity: 1, UnitPriceCents: 199}},
	}
}

func TestOrdersOverGRPC(t *testing.T) {
	app := fxtest.New(t, service.Module)
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx := t.Context()

	created, err := c.CreateOrder(ctx, book(2))
	require.NoError(t, err)
	require.NotEmpty(t, created.GetId())
	require.Equal(t, int64(2*1250+199), created.GetTotalCents())
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_PENDING, created.GetStatus())

	got, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: created.GetId()})
	require.NoError(t, err)
	require.Equal(t, created.GetItems()[0].GetSku(), got.GetItems()[0].GetSku())
	require.Equal(t, "alice", got.GetCustomerId())

	_, err = c.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: "no-such-order"})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	cancelled, err := c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: created.GetId(), Reason: "changed my mind"})
	require.NoError(t, err)
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, cancelled.GetStatus())
	require.Equal(t, "changed my mind", cancelled.GetCancelReason())

	_, err = c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: created.GetId()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)

	// The events went through the bus, with what the notifier needs.
	createdEvs := fxtest.RequirePublished[events.OrderCreated](app)
	require.Len(t, createdEvs, 1)
	require.Equal(t, created.GetId(), createdEvs[0].OrderID)
	require.Equal(t, created.GetTotalCents(), createdEvs[0].TotalCents)
	cancelEvs := fxtest.RequirePublished[events.OrderCancelled](app)
	require.Len(t, cancelEvs, 1)
	require.Equal(t, "changed my mind", cancelEvs[0].Reason)

	require.Equal(t, 1.0, app.Metric(service.MetricOrders, "action", "created"))
	require.Equal(t, 1.0, app.Metric(service.MetricOrders, "action", "cancelled"))
	app.RequireSpan("orders.v1.OrderService/CreateOrder")
}

func TestListPaging(t *testing.T) {
	app := fxtest.New(t, service.Module)
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		req := book(int32(i + 1))
		if i%2 == 1 {
			req.CustomerId = "bob"
		}
		o, err := c.CreateOrder(ctx, req)
		require.NoError(t, err)
		ids = append(ids, o.GetId())
	}
	_, err := c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: ids[4]})
	require.NoError(t, err)

	// Newest first, two at a time.
	var seen []string
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 4)
		resp, err := c.ListOrders(ctx, &ordersv1.ListOrdersRequest{PageSize: 2, PageToken: token})
		require.NoError(t, err)
		require.LessOrEqual(t, len(resp.GetOrders()), 2)
		for _, o := range resp.GetOrders() {
			seen = append(seen, o.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, seen)

	bob, err := c.ListOrders(ctx, &ordersv1.ListOrdersRequest{CustomerId: "bob"})
	require.NoError(t, err)
	require.Len(t, bob.GetOrders(), 2)
	pending, err := c.ListOrders(ctx, &ordersv1.ListOrdersRequest{Status: ordersv1.OrderStatus_ORDER_STATUS_PENDING})
	require.NoError(t, err)
	require.Len(t, pending.GetOrders(), 4)

	_, err = c.ListOrders(ctx, &ordersv1.ListOrdersRequest{PageToken: "garbage"})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
}

func violations(t *testing.T, err error) map[string]string {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	out := map[string]string{}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out[v.GetField()] = v.GetDescription()
			}
		}
	}
	return out
}

func TestValidationOverGRPC(t *testing.T) {
	app := fxtest.New(t, service.Module)
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx := t.Context()

	_, err := c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{})
	v := violations(t, err)
	require.Contains(t, v, "customer_id")
	require.Contains(t, v["items"], "at least one item")

	_, err = c.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "a", Items: []*ordersv1.LineItem{
		{Sku: "ok", Quantity: 1}, {Sku: "", Quantity: 0, UnitPriceCents: -5},
	}})
	v = violations(t, err)
	require.Len(t, v, 3, "%v", v)
	require.Contains(t, v, "items[1].sku")
	require.Contains(t, v["items[1].quantity"], "between 1 and 1000")
	require.Contains(t, v, "items[1].unit_price_cents")

	_, err = c.ListOrders(ctx, &ordersv1.ListOrdersRequest{PageSize: 101})
	require.Contains(t, violations(t, err), "page_size")
	_, err = c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: "x", Reason: strings.Repeat("r", 201)})
	require.Contains(t, violations(t, err), "reason")

	// Nothing was stored or published.
	require.Empty(t, app.Events())
	require.Equal(t, 0.0, app.Metric(service.MetricOrders, "action", "created"))
}

func TestOrdersOverREST(t *testing.T) {
	app := fxtest.New(t, service.Module)
	h := app.HTTP()

	var body []byte
	code := h.Do(http.MethodPost, "/v1/orders", json.RawMessage(
		`{"customerId":"carol","items":[{"sku":"mug","quantity":3,"unitPriceCents":800}]}`), &body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var created ordersv1.Order
	require.NoError(t, protojson.Unmarshal(body, &created))
	require.Equal(t, int64(2400), created.GetTotalCents())

	// Proto field names are accepted too.
	code = h.Do(http.MethodPost, "/v1/orders", json.RawMessage(
		`{"customer_id":"carol","items":[{"sku":"tea","quantity":1,"unit_price_cents":350}]}`), &body)
	require.Equal(t, http.StatusOK, code, "%s", body)

	code = h.Do(http.MethodGet, "/v1/orders/"+created.GetId(), nil, &body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var got ordersv1.Order
	require.NoError(t, protojson.Unmarshal(body, &got))
	require.Equal(t, created.GetId(), got.GetId())

	code = h.Do(http.MethodGet, "/v1/orders?pageSize=1", nil, &body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var page ordersv1.ListOrdersResponse
	require.NoError(t, protojson.Unmarshal(body, &page))
	require.Len(t, page.GetOrders(), 1)
	require.NotEmpty(t, page.GetNextPageToken())

	code = h.Do(http.MethodPost, "/v1/orders/"+created.GetId()+":cancel", json.RawMessage(`{"reason":"too late"}`), &body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var cancelled ordersv1.Order
	require.NoError(t, protojson.Unmarshal(body, &cancelled))
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, cancelled.GetStatus())

	code = h.Do(http.MethodPost, "/v1/orders/"+created.GetId()+":cancel", json.RawMessage(`{}`), &body)
	require.Equal(t, http.StatusBadRequest, code, "FAILED_PRECONDITION is 400 over REST: %s", body)
	code = h.Do(http.MethodGet, "/v1/orders/nope", nil, &body)
	require.Equal(t, http.StatusNotFound, code, "%s", body)

	// Validation: 400 with the google.rpc.Status and its field violations.
	code = h.Do(http.MethodPost, "/v1/orders", json.RawMessage(`{"customerId":"","items":[{"sku":"x","quantity":0}]}`), &body)
	require.Equal(t, http.StatusBadRequest, code, "%s", body)
	require.Contains(t, string(body), "invalid request")
	require.Contains(t, string(body), `"field":"customer_id"`)
	require.Contains(t, string(body), `"field":"items[0].quantity"`)
	req, err := http.NewRequest(http.MethodPost, h.URL("/v1/orders"), strings.NewReader(`{"customerId":`))
	require.NoError(t, err)
	resp, raw := h.Send(req) //nolint:bodyclose // Send reads and closes the body
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "malformed JSON: %s", raw)

	// The hand-written summary route, next to the gateway.
	var sum service.Summary
	require.Equal(t, http.StatusOK, h.Get("/v1/summary", &sum))
	require.True(t, sum.Ready)
	require.Equal(t, map[string]int64{service.StatusPending: 1, service.StatusConfirmed: 0, service.StatusCancelled: 1}, sum.Orders)
	require.Equal(t, health.StatusPassing, sum.Checks["orders-store"])
	var sumRaw string
	require.Equal(t, http.StatusOK, h.Get("/v1/summary", &sumRaw))
	require.NotContains(t, sumRaw, "error", "a public route shows check statuses only")

	// A REST call is traced through the gateway into the gRPC server.
	app.RequireSpan("orders.v1.OrderService/CancelOrder")
}

func TestWatchOrder(t *testing.T) {
	// With an hour between polls, only the local change's wake-up can
	// deliver the new status before the call's 10 s deadline.
	app := fxtest.New(t, service.Module, fx.Supply(service.WatchPoll(time.Hour)))
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	o, err := c.CreateOrder(ctx, book(1))
	require.NoError(t, err)

	stream, err := c.WatchOrder(ctx, &ordersv1.WatchOrderRequest{Id: o.GetId()})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_PENDING, first.GetStatus())

	_, err = c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: o.GetId(), Reason: "watch me"})
	require.NoError(t, err)
	next, err := stream.Recv()
	require.NoError(t, err, "a local change wakes the watcher (no poll within the deadline)")
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, next.GetStatus())
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF, "the stream ends at the final status")

	// Watching an unknown order fails at once.
	s2, err := c.WatchOrder(ctx, &ordersv1.WatchOrderRequest{Id: "missing"})
	require.NoError(t, err)
	_, err = s2.Recv()
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}

func TestWatchEndsWhenServerStops(t *testing.T) {
	app := fxtest.New(t, service.Module)
	// A connection of our own: the harness closes its own when stopping.
	conn, err := grpc.NewClient(app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	c := ordersv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o, err := c.CreateOrder(ctx, book(1))
	require.NoError(t, err)
	stream, err := c.WatchOrder(ctx, &ordersv1.WatchOrderRequest{Id: o.GetId()})
	require.NoError(t, err)
	_, err = stream.Recv()
	require.NoError(t, err)

	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(ctx) }()
	_, err = stream.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.NoError(t, <-stopped, "the open watch did not hold the graceful stop")
}

func TestReadinessFollowsTheStore(t *testing.T) {
	app := fxtest.New(t, service.Module)
	var sum service.Summary
	require.Equal(t, http.StatusOK, app.HTTP().Get("/v1/summary", &sum))

	// The orders table disappears: the check fails, readiness and the
	// summary turn 503.
	require.NoError(t, app.DB().Exec("DROP TABLE orders").Error)
	require.Eventually(t, func() bool {
		return app.Admin().Get("/readyz", nil) == http.StatusServiceUnavailable
	}, 15*time.Second, 100*time.Millisecond)
	var body string
	require.Equal(t, http.StatusInternalServerError, app.HTTP().Get("/v1/summary", &body), "counting fails: %s", body)
}

func TestAlertRuleExported(t *testing.T) {
	app := fxtest.New(t, service.Module)
	var rules string
	require.Equal(t, http.StatusOK, app.Admin().Get("/alerts/rules.yaml", &rules))
	require.Contains(t, rules, "OrdersCancellationRateHigh")
	require.Contains(t, rules, `rate(orders_total{action="cancelled"}[5m]) > 1`)
}

// With the outbox, the events commit with the orders and the notifier (in
// the same process here) records one notification per event.
func TestOutboxToNotifier(t *testing.T) {
	app := fxtest.New(t, service.Module, notifier.Module, fxtest.Env("MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=50ms"))
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx := t.Context()
	var ids []string
	for i := range 3 {
		o, err := c.CreateOrder(ctx, book(int32(i+1)))
		require.NoError(t, err)
		ids = append(ids, o.GetId())
	}
	_, err := c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: ids[0], Reason: "r"})
	require.NoError(t, err)

	var resp notifier.ListResponse
	require.Eventually(t, func() bool {
		return app.HTTP().Get("/v1/notifications", &resp) == http.StatusOK && len(resp.Notifications) == 4
	}, 15*time.Second, 50*time.Millisecond)
	per := map[string]int{}
	for _, n := range resp.Notifications {
		per[n.OrderID+" "+n.EventType]++
	}
	for _, id := range ids {
		require.Equal(t, 1, per[id+" "+events.TypeOrderCreated], id)
	}
	require.Equal(t, 1, per[ids[0]+" "+events.TypeOrderCancelled])
	// The relay removes the rows it delivered.
	require.Eventually(t, func() bool {
		var pending int64
		require.NoError(t, app.DB().Raw("SELECT COUNT(*) FROM marty_outbox WHERE delivered_at IS NULL").Scan(&pending).Error)
		return pending == 0
	}, 10*time.Second, 50*time.Millisecond)
}

// The event is published inside the unit of work: when publishing fails (here
// a synchronous handler refuses it), the order is rolled back with it.
func TestPublishFailureRollsBackTheOrder(t *testing.T) {
	refuse := fxevents.HandlerFunc("refuse", func(context.Context, events.OrderCreated) error {
		return errors.New("refused")
	})
	app := fxtest.New(t, service.Module, fxevents.AsHandler(refuse), fxtest.Env("MARTY_EVENTS_MAX_ATTEMPTS=1"))
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	_, err := c.CreateOrder(t.Context(), book(1))
	require.Error(t, err)
	require.Equal(t, codes.Internal, status.Code(err), "%v", err)

	var n int64
	require.NoError(t, app.DB().Raw("SELECT COUNT(*) FROM orders").Scan(&n).Error)
	require.Zero(t, n, "the order was rolled back with the event")
	require.Equal(t, 0.0, app.Metric(service.MetricOrders, "action", "created"), "counted only after commit")
}

func TestGetOrderReadsThroughTheCache(t *testing.T) {
	app := fxtest.New(t, service.Module)
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	ctx := t.Context()
	created, err := c.CreateOrder(ctx, book(1))
	require.NoError(t, err)
	for range 3 {
		got, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: created.GetId()})
		require.NoError(t, err)
		require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_PENDING, got.GetStatus())
	}
	require.Equal(t, 1.0, app.Metric("marty_cache_loads_total", "cache", "orders", "result", "ok"), "one load, then hits")
	require.Equal(t, 2.0, app.Metric("marty_cache_hits_total", "cache", "orders", "tier", "local"))

	_, err = c.CancelOrder(ctx, &ordersv1.CancelOrderRequest{Id: created.GetId(), Reason: "cache test"})
	require.NoError(t, err)
	got, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: created.GetId()})
	require.NoError(t, err)
	require.Equal(t, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, got.GetStatus(), "the cancel invalidated the cached order")
}
