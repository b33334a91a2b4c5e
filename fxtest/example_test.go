package fxtest_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtest"
)

// ---- The service under test (normally a package of its own) ----

// Order is the stored row.
type Order struct {
	ID      int64 `gorm:"primaryKey"`
	Item    string
	Shipped bool
}

// OrderCreated is published when an order is created.
type OrderCreated struct {
	ID   int64
	Item string
}

func (OrderCreated) EventType() string { return "orders.created" }

// OrdersServer is the gRPC service /orders.Orders: Create takes the item and
// returns the new order's id (well-known wrapper messages, so no codegen).
type OrdersServer interface {
	Create(context.Context, *wrapperspb.StringValue) (*wrapperspb.Int64Value, error)
}

var ordersDesc = grpc.ServiceDesc{
	ServiceName: "orders.Orders",
	HandlerType: (*OrdersServer)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Create", Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		call := func(ctx context.Context, req any) (any, error) {
			return srv.(OrdersServer).Create(ctx, req.(*wrapperspb.StringValue))
		}
		if icpt == nil {
			return call(ctx, in)
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/orders.Orders/Create"}, call)
	}}},
}

type orders struct {
	repo *fxrepo.Repository[Order, int64]
	bus  fxevents.Bus
}

func (o *orders) Create(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.Int64Value, error) {
	ord := &Order{Item: in.GetValue()}
	if err := o.repo.Create(ctx, ord); err != nil {
		return nil, err
	}
	if err := o.bus.Publish(ctx, OrderCreated{ID: ord.ID, Item: ord.Item}); err != nil {
		return nil, err
	}
	return wrapperspb.Int64(ord.ID), nil
}

// OrdersModule is the service: a gRPC method, an HTTP route, a repository
// and an event handler that ships created orders.
var OrdersModule = fx.Options(
	fx.Provide(fxrepo.NewRepository[Order, int64]),
	fxrepo.AsModel(&Order{}),
	fxgrpc.AsService(&ordersDesc, func(r *fxrepo.Repository[Order, int64], bus fxevents.Bus) *orders {
		return &orders{repo: r, bus: bus}
	}),
	fxhttp.AsRoute("GET /orders/{id}", func(r *fxrepo.Repository[Order, int64]) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			id, _ := strconv.ParseInt(req.PathValue("id"), 10, 64)
			ord, err := r.Get(req.Context(), id)
			if err != nil {
				fxhttp.WriteError(w, req, err)
				return
			}
			fxhttp.WriteJSON(w, http.StatusOK, ord)
		})
	}),
	fxevents.AsHandler(func(r *fxrepo.Repository[Order, int64]) fxevents.Handler {
		return fxevents.HandlerFunc("shipper", func(ctx context.Context, e OrderCreated) error {
			ord, err := r.Get(ctx, e.ID)
			if err != nil {
				return err
			}
			ord.Shipped = true
			return r.Update(ctx, ord)
		})
	}),
)

// ---- The test: the one in README.md ----

func TestOrders(t *testing.T) {
	t.Parallel()
	app := fxtest.New(t, OrdersModule)
	ctx := context.Background()

	id := new(wrapperspb.Int64Value) // the gRPC method
	require.NoError(t, app.GRPC().Invoke(ctx, "/orders.Orders/Create", wrapperspb.String("book"), id))

	var got Order // the HTTP route
	require.Equal(t, http.StatusOK, app.HTTP().Get(fmt.Sprint("/orders/", id.Value), &got))
	require.Equal(t, "book", got.Item)

	row, err := fxrepo.NewRepository[Order, int64](app.DB()).Get(ctx, id.Value) // the stored row
	require.NoError(t, err)
	require.True(t, row.Shipped, "shipped by the event handler")

	events := fxtest.RequirePublished[OrderCreated](app) // the published event
	require.Equal(t, []OrderCreated{{ID: id.Value, Item: "book"}}, events)

	app.RequireSpan("orders.Orders/Create", attribute.String("rpc.response.status_code", "OK")) // the spans
	app.RequireSpan("process orders.created", attribute.String("messaging.consumer.group.name", "shipper"))
}

// ---- Examples ----

// New in a test: the app starts with test defaults, the test drives it and
// asserts on what it did, and the app stops when the test ends.
func ExampleNew() {
	testOrders := func(t *testing.T) {
		app := fxtest.New(t, OrdersModule,
			fxtest.Env("MARTY_GRPC_MAX_RECV_MSG_SIZE=65536"), // harness options and Fx options mix
			fxtest.WaitTimeout(2*time.Second),
		)
		var got Order
		require.Equal(t, http.StatusNotFound, app.HTTP().Get("/orders/1", &got))
	}
	_ = testOrders
}

// MemoryStore is an in-memory fxrepo.Store with the repository's semantics,
// for unit tests of code that takes a store.
func ExampleNewMemoryStore() {
	ctx := context.Background()
	store := fxtest.NewMemoryStore[Order, int64]()
	ord := &Order{Item: "book"}
	_ = store.Create(ctx, ord)
	got, _ := store.Get(ctx, ord.ID)
	_, err := store.Get(ctx, 42)
	fmt.Println(got.ID, got.Item, errors.Is(err, fxrepo.ErrNotFound))
	// Output:
	// 1 book true
}
