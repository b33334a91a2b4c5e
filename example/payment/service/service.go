// Package service is the payment service of the martyfx example: the order
// saga's other side. It consumes the ReservePayment and ReleasePayment
// commands with idempotent handlers (fxevents.Idempotent: the marty_inbox
// table turns redeliveries into one effect), keeps one row per order in its
// own payments table, answers with PaymentReserved or PaymentDeclined
// through the bus (the outbox with MARTY_EVENTS_BUS=outbox: the answer
// commits with the row and the inbox mark), and serves the rows at GET
// /v1/payments.
//
// The provider is a fake, deterministic by customer id (FakeProvider):
// customers whose id starts with "declined-" are declined, those whose id
// starts with "slow-" never get an answer (the row stays pending and no
// event is sent, so the order saga's deadline decides), everyone else is
// reserved.
//
// The commands come over NATS JetStream when natsjs.Module is in the app
// (MARTY_NATS_URL), or from the bus of the same process: the orders binary
// includes this Module when it runs without NATS.
package service

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/example/events"
	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxrepo"
)

// Handler names: each names its inbox rows, metrics and (with NATS) its
// durable consumer; one event type each (one filter subject per consumer).
const (
	HandlerReserve = "payment_reserve"
	HandlerRelease = "payment_release"
)

// Payment statuses as stored in the payments table.
const (
	StatusReserved = "reserved" // the provider reserved the amount
	StatusDeclined = "declined" // the provider declined it
	StatusPending  = "pending"  // the provider never answered
	StatusReleased = "released" // the order saga (or a cancel) released it
)

// Customer id prefixes of the fake provider.
const (
	PrefixDeclined = "declined-"
	PrefixSlow     = "slow-"
)

//go:embed migrations
var migrations embed.FS

// Payment is a row of the payments table: one per order.
type Payment struct {
	OrderID     string `gorm:"primaryKey;size:64" json:"order_id"`
	CustomerID  string `gorm:"size:64;not null" json:"customer_id"`
	AmountCents int64  `gorm:"not null" json:"amount_cents"`
	Status      string `gorm:"size:16;not null" json:"status"`
	// Answer is the provider's: "reserved", "declined: <why>" or "no answer".
	Answer string `gorm:"size:200;not null;default:''" json:"answer"`
	// ReleaseReason is why it was released (the ReleasePayment's reason).
	ReleaseReason string    `gorm:"size:200;not null;default:''" json:"release_reason,omitempty"`
	CreatedAt     time.Time `gorm:"not null" json:"created_at"`
	UpdatedAt     time.Time `gorm:"not null" json:"updated_at"`
}

// TableName is the table of Payment.
func (Payment) TableName() string { return "payments" }

// Decision is a provider's answer to a reservation.
type Decision struct {
	// Status is StatusReserved, StatusDeclined or StatusPending (no answer).
	Status string
	// Reason says why it was declined.
	Reason string
}

// Provider reserves money with a payment provider.
type Provider interface {
	Reserve(ctx context.Context, customerID string, amountCents int64) Decision
}

// FakeProvider is the example's provider, deterministic by customer id:
// "declined-..." is declined, "slow-..." never answers, anyone else is
// reserved.
type FakeProvider struct{}

// Reserve implements Provider.
func (FakeProvider) Reserve(_ context.Context, customerID string, _ int64) Decision {
	switch {
	case strings.HasPrefix(customerID, PrefixDeclined):
		return Decision{Status: StatusDeclined, Reason: "card declined"}
	case strings.HasPrefix(customerID, PrefixSlow):
		return Decision{Status: StatusPending}
	}
	return Decision{Status: StatusReserved}
}

// Module is the payment service: migrations, the fake provider, the two
// idempotent handlers and the HTTP route. It needs fxrepo.Module and
// fxevents.Module (martyfx.Modules). Replace the provider with
// fx.Decorate(func(Provider) Provider { ... }).
var Module = fx.Options(
	fxrepo.AsMigrations("payment", mustSub(migrations, "migrations")),
	fx.Provide(func() Provider { return FakeProvider{} }, NewHandlers),
	// The bus depends on the handlers (its dispatcher holds them): the
	// handlers get it once both exist, before the app starts.
	fx.Invoke(func(h *Handlers, bus fxevents.Bus) { h.UseBus(bus) }),
	fxevents.AsHandler(func(h *Handlers) fxevents.Handler {
		return fxevents.Idempotent(fxevents.HandlerFunc(HandlerReserve, h.Reserve))
	}),
	fxevents.AsHandler(func(h *Handlers) fxevents.Handler {
		return fxevents.Idempotent(fxevents.HandlerFunc(HandlerRelease, h.Release))
	}),
	fxhttp.AsRoute("GET /v1/payments", NewListHandler),
	// Public when an app with fxauth.Module (the orders binary running
	// payment in process) turns authentication on; inert otherwise.
	fxauth.AsRule("GET /v1/payments", fxauth.Public()),
)

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Handlers handle the payment commands. Each runs in the inbox's
// transaction (fxevents.Idempotent): fxrepo.DB joins it, and so does the
// outbox's Publish, so the row, the answer and the inbox mark commit
// together.
type Handlers struct {
	db       *gorm.DB
	bus      fxevents.Bus
	provider Provider
	log      *zap.Logger
	now      func() time.Time
}

// NewHandlers returns the command handlers; give them the bus they answer
// through with UseBus before they handle anything.
func NewHandlers(db *gorm.DB, provider Provider, log *zap.Logger) *Handlers {
	return &Handlers{db: db, provider: provider, log: log, now: func() time.Time { return time.Now().UTC() }}
}

// UseBus sets the bus the answers are published on.
func (h *Handlers) UseBus(bus fxevents.Bus) { h.bus = bus }

// find returns the order's payment, or nil.
func (h *Handlers) find(ctx context.Context, orderID string) (*Payment, error) {
	var p Payment
	err := fxrepo.DB(ctx, h.db).Where("order_id = ?", orderID).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("payment: load payment of order %s: %w", orderID, err)
	}
	return &p, nil
}

// Reserve asks the provider for the order's amount, records its answer and
// publishes PaymentReserved or PaymentDeclined (nothing when it did not
// answer). An order that already has a row (reserved before, or released
// before its reservation arrived) is left as it is.
func (h *Handlers) Reserve(ctx context.Context, cmd events.ReservePayment) error {
	existing, err := h.find(ctx, cmd.OrderID)
	if err != nil || existing != nil {
		return err
	}
	d := h.provider.Reserve(ctx, cmd.CustomerID, cmd.AmountCents)
	now := h.now()
	p := Payment{OrderID: cmd.OrderID, CustomerID: cmd.CustomerID, AmountCents: cmd.AmountCents,
		Status: d.Status, CreatedAt: now, UpdatedAt: now}
	var answer fxevents.Event
	switch d.Status {
	case StatusReserved:
		p.Answer = "reserved"
		answer = events.PaymentReserved{OrderID: cmd.OrderID, AmountCents: cmd.AmountCents}
	case StatusDeclined:
		p.Answer = "declined: " + d.Reason
		answer = events.PaymentDeclined{OrderID: cmd.OrderID, Reason: d.Reason}
	case StatusPending:
		p.Answer = "no answer"
	default:
		return fmt.Errorf("payment: provider answered %q for order %s", d.Status, cmd.OrderID)
	}
	if err := fxrepo.DB(ctx, h.db).Create(&p).Error; err != nil {
		return fmt.Errorf("payment: record payment of order %s: %w", cmd.OrderID, err)
	}
	h.log.Info("payment: reservation recorded", zap.String("order_id", p.OrderID),
		zap.String("customer_id", p.CustomerID), zap.String("status", p.Status))
	if answer == nil {
		return nil
	}
	if err := h.bus.Publish(ctx, answer); err != nil {
		return fmt.Errorf("payment: answer for order %s: %w", cmd.OrderID, err)
	}
	return nil
}

// Release releases the order's payment, whatever the provider answered. A
// release that arrives before its reservation records a released row, so
// the reservation that follows is not made.
func (h *Handlers) Release(ctx context.Context, cmd events.ReleasePayment) error {
	p, err := h.find(ctx, cmd.OrderID)
	if err != nil {
		return err
	}
	now := h.now()
	if p == nil {
		p = &Payment{OrderID: cmd.OrderID, Status: StatusReleased, ReleaseReason: cmd.Reason, CreatedAt: now, UpdatedAt: now}
		if err := fxrepo.DB(ctx, h.db).Create(p).Error; err != nil {
			return fmt.Errorf("payment: record release of order %s: %w", cmd.OrderID, err)
		}
	} else {
		if p.Status == StatusReleased {
			return nil
		}
		err := fxrepo.DB(ctx, h.db).Model(&Payment{}).Where("order_id = ?", cmd.OrderID).
			Updates(map[string]any{"status": StatusReleased, "release_reason": cmd.Reason, "updated_at": now}).Error
		if err != nil {
			return fmt.Errorf("payment: release payment of order %s: %w", cmd.OrderID, err)
		}
	}
	h.log.Info("payment: released", zap.String("order_id", cmd.OrderID), zap.String("reason", cmd.Reason))
	return nil
}

// ListResponse is the body of GET /v1/payments.
type ListResponse struct {
	Payments      []Payment `json:"payments"`
	NextPageToken string    `json:"next_page_token,omitempty"`
}

// NewListHandler serves GET /v1/payments, by order id (UUIDv7 order ids:
// oldest first): ?order_id= and ?customer_id= filter, ?page_size= (1 to
// 500, default 100) and ?page_token= page through.
func NewListHandler(db *gorm.DB) http.Handler {
	repo := fxrepo.NewRepository[Payment, string](db)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		opts := fxrepo.ListOptions{Limit: 100, Cursor: q.Get("page_token")}
		if s := q.Get("page_size"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 500 {
				fxhttp.WriteProblem(w, r, http.StatusBadRequest, fmt.Sprintf("page_size: want an integer from 1 to 500, got %q", s))
				return
			}
			opts.Limit = n
		}
		for _, col := range []string{"order_id", "customer_id"} {
			if v := q.Get(col); v != "" {
				opts.Scopes = append(opts.Scopes, func(db *gorm.DB) *gorm.DB { return db.Where(col+" = ?", v) })
			}
		}
		page, err := repo.List(r.Context(), opts)
		if err != nil {
			if opts.Cursor != "" && fxcore.Classify(err).Class == fxcore.ClassInvalid {
				fxhttp.WriteProblem(w, r, http.StatusBadRequest, "page_token: not a token of this listing")
				return
			}
			fxhttp.WriteError(w, r, fmt.Errorf("payment: list payments: %w", err))
			return
		}
		resp := ListResponse{Payments: page.Items, NextPageToken: page.Next}
		if resp.Payments == nil {
			resp.Payments = []Payment{}
		}
		fxhttp.WriteJSON(w, http.StatusOK, resp)
	})
}
