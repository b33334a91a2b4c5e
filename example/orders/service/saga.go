package service

import (
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/example/events"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents/saga"
)

// SagaName is the order saga's name: its rows in marty_saga, its event
// handler ("saga.order") and its admin routes (/sagas/order:<order id>).
const SagaName = "order"

// The order saga's timer and compensation.
const (
	TimerPaymentDeadline       = "payment-deadline"
	CompensationReleasePayment = "release-payment"
)

// Cancellation reasons the saga gives (Order.CancelReason, the
// OrderCancelled event and so the customer's notification).
const (
	ReasonPaymentDeclined = "payment declined"
	ReasonPaymentTimeout  = "payment not received in time"
)

// SagaConfig is the "orders" section: MARTY_ORDERS_PAYMENT_DEADLINE.
type SagaConfig struct {
	// PaymentDeadline is how long the saga waits for the payment service's
	// answer before it cancels the order (default 15m).
	PaymentDeadline time.Duration `koanf:"payment_deadline"`
}

// DefaultSagaConfig waits 15 minutes for the payment.
func DefaultSagaConfig() SagaConfig { return SagaConfig{PaymentDeadline: 15 * time.Minute} }

// Validate requires a positive deadline.
func (c SagaConfig) Validate() error {
	if c.PaymentDeadline <= 0 {
		return fxcore.Invalid("payment_deadline", c.PaymentDeadline, "a positive duration such as 15m or 10s")
	}
	return nil
}

// OrderSaga is the order saga's state (stored as JSON in marty_saga).
type OrderSaga struct {
	CustomerID string `json:"customer_id"`
	TotalCents int64  `json:"total_cents"`
	// Outcome is how it ended: "confirmed", or the cancellation's reason.
	Outcome string `json:"outcome,omitempty"`
}

// SagaModule is the order saga: OrderCreated starts it; it asks the payment
// service to reserve the order's total (ReservePayment) and sets a deadline
// (MARTY_ORDERS_PAYMENT_DEADLINE). PaymentReserved confirms the order
// (OrderConfirmed) and completes the saga; PaymentDeclined, the deadline or
// the customer cancelling the order fail it: the order is cancelled (its
// OrderCancelled event makes the notifier tell the customer) and the
// compensation releases the payment (ReleasePayment).
//
// It includes saga.Module and needs MARTY_EVENTS_BUS=outbox (the saga's
// steps commit with the outbox); the orders binary sets it by default.
// Module does not include it, so an app of Module alone runs on any bus.
var SagaModule = fx.Options(
	saga.Module,
	fx.Provide(fxcore.ProvideConfig[SagaConfig]("orders", DefaultSagaConfig)),
	saga.AsSaga(NewOrderSaga),
)

// NewOrderSaga defines the order saga on the orders table: each step's order
// update joins the step's transaction, and the step emits its events
// through the outbox in it.
func NewOrderSaga(cfg SagaConfig, orders *Orders) *saga.Definition[OrderSaga] {
	d := saga.New[OrderSaga](SagaName)
	saga.Start(d, func(e events.OrderCreated) string { return e.OrderID },
		func(s *saga.Step[OrderSaga], e events.OrderCreated) error {
			s.State.CustomerID, s.State.TotalCents = e.CustomerID, e.TotalCents
			// Whatever happens next, a failure releases what payment holds.
			if err := s.AddCompensation(CompensationReleasePayment); err != nil {
				return err
			}
			if err := s.Schedule(TimerPaymentDeadline, cfg.PaymentDeadline); err != nil {
				return err
			}
			return s.Emit(events.ReservePayment{OrderID: e.OrderID, CustomerID: e.CustomerID, AmountCents: e.TotalCents})
		})

	saga.On(d, func(e events.PaymentReserved) string { return e.OrderID },
		func(s *saga.Step[OrderSaga], e events.PaymentReserved) error {
			o, err := orders.rows.Get(s.Context(), s.Key())
			if err != nil {
				return fmt.Errorf("orders: saga: load order %s: %w", s.Key(), err)
			}
			if o.Status != StatusPending {
				// Cancelled meanwhile: the reservation goes back.
				s.State.Outcome = "order " + o.Status
				s.Fail("order is " + o.Status)
				return nil
			}
			s.State.Outcome = StatusConfirmed
			s.Complete()
			ev, err := orders.confirm(s.Context(), o)
			if err != nil {
				return err
			}
			return s.Emit(ev)
		})

	saga.On(d, func(e events.PaymentDeclined) string { return e.OrderID },
		func(s *saga.Step[OrderSaga], _ events.PaymentDeclined) error {
			return cancelFor(s, orders, ReasonPaymentDeclined)
		})

	d.OnTimer(TimerPaymentDeadline, func(s *saga.Step[OrderSaga]) error {
		return cancelFor(s, orders, ReasonPaymentTimeout)
	})

	// The customer cancelled the order while the saga waited for the
	// payment (the saga's own cancellations come back here too, once it
	// failed: the runtime ignores them).
	saga.On(d, func(e events.OrderCancelled) string { return e.OrderID },
		func(s *saga.Step[OrderSaga], e events.OrderCancelled) error {
			s.State.Outcome = "cancelled by the customer"
			s.Fail("order cancelled: " + e.Reason)
			return nil
		})

	d.Compensation(CompensationReleasePayment, func(s *saga.Step[OrderSaga]) error {
		return s.Emit(events.ReleasePayment{OrderID: s.Key(), Reason: s.State.Outcome})
	})
	return d
}

// cancelFor fails the saga for reason and cancels its order if it is still
// pending, in the step's transaction.
func cancelFor(s *saga.Step[OrderSaga], orders *Orders, reason string) error {
	s.State.Outcome = reason
	s.Fail(reason)
	o, err := orders.rows.Get(s.Context(), s.Key())
	if err != nil {
		return fmt.Errorf("orders: saga: load order %s: %w", s.Key(), err)
	}
	if o.Status != StatusPending {
		return nil
	}
	evs, err := orders.cancel(s.Context(), o, reason)
	if err != nil {
		return err
	}
	return s.Emit(evs...)
}
