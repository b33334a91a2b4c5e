// Package events holds the messages the example services exchange: the
// orders service's domain events (the notifier consumes them) and the order
// saga's payment commands and answers (the payment service). They travel as JSON (fxevents' default codec) through
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

// The order saga's messages (see example/orders/service/saga.go): orders
// asks payment to reserve or release the money of an order; payment answers
// with PaymentReserved or PaymentDeclined (or, for a provider that never
// answers, with nothing, and the saga's deadline decides). Every message
// carries the order id as its aggregate, so one order's messages are
// delivered in the order they were published.
const (
	TypeOrderConfirmed  = "orders.order_confirmed"
	TypeReservePayment  = "payment.reserve_payment"
	TypeReleasePayment  = "payment.release_payment"
	TypePaymentReserved = "payment.payment_reserved"
	TypePaymentDeclined = "payment.payment_declined"
)

// OrderConfirmed is published when the order saga confirms an order (its
// payment is reserved), in the transaction that updates it.
type OrderConfirmed struct {
	OrderID     string    `json:"order_id"`
	CustomerID  string    `json:"customer_id"`
	TotalCents  int64     `json:"total_cents"`
	ConfirmedAt time.Time `json:"confirmed_at"`
}

// EventType implements fxevents.Event.
func (OrderConfirmed) EventType() string { return TypeOrderConfirmed }

// AggregateID keeps one order's events in order.
func (e OrderConfirmed) AggregateID() string { return e.OrderID }

// ReservePayment asks the payment service to reserve an order's total.
type ReservePayment struct {
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
}

// EventType implements fxevents.Event.
func (ReservePayment) EventType() string { return TypeReservePayment }

// AggregateID keeps one order's messages in order.
func (e ReservePayment) AggregateID() string { return e.OrderID }

// ReleasePayment asks the payment service to release whatever it holds for
// an order (a reservation, or a request still waiting for the provider).
type ReleasePayment struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// EventType implements fxevents.Event.
func (ReleasePayment) EventType() string { return TypeReleasePayment }

// AggregateID keeps one order's messages in order.
func (e ReleasePayment) AggregateID() string { return e.OrderID }

// PaymentReserved is the payment service's answer when the provider
// reserved the amount.
type PaymentReserved struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// EventType implements fxevents.Event.
func (PaymentReserved) EventType() string { return TypePaymentReserved }

// AggregateID keeps one order's messages in order.
func (e PaymentReserved) AggregateID() string { return e.OrderID }

// PaymentDeclined is the payment service's answer when the provider
// declined the payment.
type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// EventType implements fxevents.Event.
func (PaymentDeclined) EventType() string { return TypePaymentDeclined }

// AggregateID keeps one order's messages in order.
func (e PaymentDeclined) AggregateID() string { return e.OrderID }
