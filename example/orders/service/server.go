package service

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/fx"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/example/events"
	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
)

// DefaultPageSize is the page size of ListOrders when the request has none.
const DefaultPageSize = 20

// WatchPollInterval is how often WatchOrder re-reads a watched order. A
// change made by this replica wakes the watchers at once; one made by
// another replica is seen within this interval.
const WatchPollInterval = 500 * time.Millisecond

// WatchPoll is the watchers' poll interval when supplied to the graph, in
// place of WatchPollInterval (a test stretches it to show that a local
// change needs no poll).
type WatchPoll time.Duration

// Orders is the orders table as the server and the order saga change it:
// the cached and uncached repositories, the business metrics and the
// watchers' wake-up. It publishes nothing itself: its changes return the
// events, which the server publishes on the bus and the saga emits from its
// step (both through the outbox in the same transaction).
type Orders struct {
	// orders reads through the cache (GetOrder); writes invalidate it
	// after the commit. rows is the uncached repository (WatchOrder polls
	// the database for other replicas' changes; the saga reads its order
	// in the step's transaction).
	orders  *fxcache.Repository[Order, string]
	rows    *fxrepo.Repository[Order, string]
	metrics *Metrics
	changes *Changes
	now     func() time.Time
}

// NewOrders returns the orders table's accessors.
func NewOrders(db *gorm.DB, cache *fxcache.Cache, metrics *Metrics, changes *Changes) *Orders {
	rows := fxrepo.NewRepository[Order, string](db)
	return &Orders{
		orders:  fxcache.NewRepository[Order, string](rows, cache, "orders", fxcache.TypedOptions{}),
		rows:    rows,
		metrics: metrics,
		changes: changes,
		now:     func() time.Time { return time.Now().UTC() },
	}
}

// Server implements orders.v1.OrderService on the orders repository, the
// unit of work and the event bus.
type Server struct {
	ordersv1.UnimplementedOrderServiceServer
	*Orders

	uow       fxrepo.UnitOfWork
	bus       fxevents.Bus
	stop      <-chan struct{}
	watchPoll time.Duration
}

// ServerParams are the dependencies of NewServer.
type ServerParams struct {
	fx.In

	Orders   *Orders
	UoW      fxrepo.UnitOfWork
	Bus      fxevents.Bus
	Stopping *fxcore.Stopping
	// WatchPoll overrides WatchPollInterval when supplied.
	WatchPoll WatchPoll `optional:"true"`
}

// NewServer returns the OrderService implementation.
func NewServer(p ServerParams) *Server {
	poll := time.Duration(p.WatchPoll)
	if poll <= 0 {
		poll = WatchPollInterval
	}
	return &Server{Orders: p.Orders, uow: p.UoW, bus: p.Bus, stop: p.Stopping.Done(), watchPoll: poll}
}

// CreateOrder stores a PENDING order and publishes OrderCreated in the same
// unit of work (with MARTY_EVENTS_BUS=outbox both commit or neither does).
func (s *Server) CreateOrder(ctx context.Context, req *ordersv1.CreateOrderRequest) (*ordersv1.Order, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("orders: new id: %w", err) // unclassified: "internal error (ref ...)"
	}
	now := s.now()
	o := &Order{ID: id.String(), CustomerID: req.GetCustomerId(), Status: StatusPending, CreatedAt: now, UpdatedAt: now}
	for _, it := range req.GetItems() {
		o.Items = append(o.Items, Item{SKU: it.GetSku(), Quantity: it.GetQuantity(), UnitPriceCents: it.GetUnitPriceCents()})
		o.TotalCents += int64(it.GetQuantity()) * it.GetUnitPriceCents()
	}
	err = s.uow.Do(ctx, func(ctx context.Context) error {
		if err := s.orders.Create(ctx, o); err != nil {
			return err
		}
		fxrepo.AfterCommit(ctx, func() { s.metrics.created.Inc(); s.changes.Signal() })
		return s.bus.Publish(ctx, events.OrderCreated{
			OrderID: o.ID, CustomerID: o.CustomerID, TotalCents: o.TotalCents, Items: len(o.Items), CreatedAt: now,
		})
	})
	if err != nil {
		return nil, fmt.Errorf("orders: create order: %w", err)
	}
	return o.Proto(), nil
}

// GetOrder reads one order through the cache (in process, and in Redis
// with MARTY_CACHE_URL); CancelOrder invalidates it once committed.
func (s *Server) GetOrder(ctx context.Context, req *ordersv1.GetOrderRequest) (*ordersv1.Order, error) {
	o, err := s.orders.Get(ctx, req.GetId())
	if err != nil {
		return nil, fmt.Errorf("orders: get order: %w", err)
	}
	return o.Proto(), nil
}

// ListOrders returns a page of orders, newest first (ids are UUIDv7, so the
// primary key order is the creation order), with keyset paging.
func (s *Server) ListOrders(ctx context.Context, req *ordersv1.ListOrdersRequest) (*ordersv1.ListOrdersResponse, error) {
	opts := fxrepo.ListOptions{Limit: int(req.GetPageSize()), Cursor: req.GetPageToken(), Desc: true}
	if opts.Limit == 0 {
		opts.Limit = DefaultPageSize
	}
	if c := req.GetCustomerId(); c != "" {
		opts.Scopes = append(opts.Scopes, func(db *gorm.DB) *gorm.DB { return db.Where("customer_id = ?", c) })
	}
	if st := statusFromProto(req.GetStatus()); st != "" {
		opts.Scopes = append(opts.Scopes, func(db *gorm.DB) *gorm.DB { return db.Where("status = ?", st) })
	}
	page, err := s.orders.List(ctx, opts)
	if err != nil {
		if req.GetPageToken() != "" && fxcore.Classify(err).Class == fxcore.ClassInvalid {
			return nil, fxcore.NewError(fxcore.ClassInvalid, "invalid request: page_token: not a token of this listing", err)
		}
		return nil, fmt.Errorf("orders: list orders: %w", err)
	}
	resp := &ordersv1.ListOrdersResponse{NextPageToken: page.Next}
	for i := range page.Items {
		resp.Orders = append(resp.Orders, page.Items[i].Proto())
	}
	return resp, nil
}

// CancelOrder cancels a PENDING or CONFIRMED order and publishes
// OrderCancelled in the same unit of work; cancelling a confirmed order also
// asks the payment service to release its reservation (ReleasePayment). A
// pending order's running saga sees the OrderCancelled and releases the
// payment it asked for. Cancelling a cancelled order is FAILED_PRECONDITION;
// a concurrent change of the order (optimistic locking) is ABORTED.
//
// The handlers return errors as they are: fxrepo classifies the database's
// (NOT_FOUND "Order 42 not found", INVALID_ARGUMENT for a NUL byte in a
// text field, UNAVAILABLE while the database restarts ...), the service
// classifies its own with fxcore.NewError, and fxgrpc maps the classes to
// codes; anything unclassified reaches the client as "internal error (ref
// <id>)".
func (s *Server) CancelOrder(ctx context.Context, req *ordersv1.CancelOrderRequest) (*ordersv1.Order, error) {
	var out *Order
	err := s.uow.Do(ctx, func(ctx context.Context) error {
		o, err := s.orders.Get(ctx, req.GetId())
		if err != nil {
			return err
		}
		if o.Status != StatusPending && o.Status != StatusConfirmed {
			return fxcore.NewError(fxcore.ClassFailedPrecondition,
				fmt.Sprintf("order %s is %s: only pending or confirmed orders can be cancelled", o.ID, o.Status), nil)
		}
		out = o
		evs, err := s.cancel(ctx, o, req.GetReason())
		if err != nil {
			return err
		}
		return s.bus.Publish(ctx, evs...)
	})
	if err != nil {
		return nil, fmt.Errorf("orders: cancel order: %w", err)
	}
	return out.Proto(), nil
}

// cancel marks o (pending or confirmed) cancelled for reason in ctx's unit
// of work, and returns the events to publish in it: OrderCancelled, and
// ReleasePayment for a confirmed order.
func (s *Orders) cancel(ctx context.Context, o *Order, reason string) ([]fxevents.Event, error) {
	confirmed := o.Status == StatusConfirmed
	now := s.now()
	o.Status, o.CancelReason, o.UpdatedAt = StatusCancelled, reason, now
	if err := s.orders.Update(ctx, o); err != nil {
		return nil, err
	}
	fxrepo.AfterCommit(ctx, func() { s.metrics.cancelled.Inc(); s.changes.Signal() })
	evs := []fxevents.Event{events.OrderCancelled{
		OrderID: o.ID, CustomerID: o.CustomerID, Reason: o.CancelReason, CancelledAt: now,
	}}
	if confirmed {
		evs = append(evs, events.ReleasePayment{OrderID: o.ID, Reason: "order cancelled"})
	}
	return evs, nil
}

// confirm marks the pending order o confirmed in ctx's unit of work (the
// order saga's step) and returns its OrderConfirmed.
func (s *Orders) confirm(ctx context.Context, o *Order) (fxevents.Event, error) {
	now := s.now()
	o.Status, o.UpdatedAt = StatusConfirmed, now
	if err := s.orders.Update(ctx, o); err != nil {
		return nil, err
	}
	fxrepo.AfterCommit(ctx, func() { s.metrics.confirmed.Inc(); s.changes.Signal() })
	return events.OrderConfirmed{
		OrderID: o.ID, CustomerID: o.CustomerID, TotalCents: o.TotalCents, ConfirmedAt: now,
	}, nil
}

// WatchOrder sends the order's current status, then each change, and returns
// once the order is cancelled (final). It re-reads the order when this
// replica changes an order and every WatchPollInterval (changes made by other
// replicas). When the server stops, the stream ends with UNAVAILABLE so it
// never holds the graceful stop: the client watches again elsewhere.
func (s *Server) WatchOrder(req *ordersv1.WatchOrderRequest, stream grpc.ServerStreamingServer[ordersv1.OrderStatusChange]) error {
	ctx := stream.Context()
	ticker := time.NewTicker(s.watchPoll)
	defer ticker.Stop()
	last := ""
	for {
		wake := s.changes.Wait()
		o, err := s.rows.Get(ctx, req.GetId())
		if err != nil {
			return fmt.Errorf("orders: watch order: %w", err)
		}
		if o.Status != last {
			last = o.Status
			if err := stream.Send(&ordersv1.OrderStatusChange{
				OrderId: o.ID, Status: statusToProto(o.Status), Time: timestamppb.New(o.UpdatedAt),
			}); err != nil {
				return err
			}
			if o.Status == StatusCancelled {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stop:
			return status.Error(codes.Unavailable, "orders: server is stopping; watch again")
		case <-wake:
		case <-ticker.C:
		}
	}
}

// Changes wakes WatchOrder streams when this replica changes an order.
type Changes struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewChanges returns a Changes with no waiter.
func NewChanges() *Changes { return &Changes{ch: make(chan struct{})} }

// Wait returns a channel closed at the next Signal.
func (c *Changes) Wait() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ch
}

// Signal wakes every waiter.
func (c *Changes) Signal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.ch)
	c.ch = make(chan struct{})
}
