// Package events holds the domain events the orders service publishes and
// the notifier consumes. They travel as JSON (fxevents' default codec) through
// the in-memory bus, the outbox, or NATS JetStream.
package events

import "time"

// Event types: the EventType of each event, also the NATS subject suffix.
const (
	TypeOrderCreated   = "orders.order_created"
	TypeOrderCancelled = "orders.order_cancelled"
)

// OrderCreated is published when an order is placed, in the transaction that
// stores it.
type OrderCreated struct {
	OrderID    string    `json:"order_id"`
	CustomerID string    `json:"customer_id"`
	TotalCents int64     `json:"total_cents"`
	Items      int       `json:"items"`
	CreatedAt  time.Time `json:"created_at"`
}

// EventType implements fxevents.Event.
func (OrderCreated) EventType() string { return TypeOrderCreated }

// AggregateID keeps one order's events in order.
func (e OrderCreated) AggregateID() string { return e.OrderID }

// OrderCancelled is published when an order is cancelled, in the transaction
// that updates it.
type OrderCancelled struct {
	OrderID     string    `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	Reason      string    `json:"reason"`
	CancelledAt time.Time `json:"cancelled_at"`
}

// EventType implements fxevents.Event.
func (OrderCancelled) EventType() string { return TypeOrderCancelled }

// AggregateID keeps one order's events in order.
func (e OrderCancelled) AggregateID() string { return e.OrderID }
