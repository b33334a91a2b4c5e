// Package service is the notifier of the martyfx example: it consumes the
// orders service's OrderCreated, OrderConfirmed (the order saga reserved the
// payment) and OrderCancelled (by the customer, or by the saga when the
// payment was declined or late) events through an idempotent handler (fxevents.Idempotent: the marty_inbox table turns
// redeliveries into one effect), records one notification per event in its
// own notifications table, and serves them at GET /v1/notifications.
//
// The events come over NATS JetStream when natsjs.Module is in the app
// (MARTY_NATS_URL), or from the bus of the same process: the orders binary
// includes this Module when it runs without NATS.
package service

import (
	"context"
	"embed"
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
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxrepo"
)

// Handler names: each names its inbox rows, metrics and (with NATS) its
// durable consumer. One handler per event type, so each consumer has one
// filter subject (NATS servers before 2.10 refuse several).
const (
	HandlerCreated   = "notify_order_created"
	HandlerConfirmed = "notify_order_confirmed"
	HandlerCancelled = "notify_order_cancelled"
)

//go:embed migrations
var migrations embed.FS

// Notification is a row of the notifications table: one per event handled.
type Notification struct {
	ID         int64     `gorm:"primaryKey;autoIncrement" json:"id"`
	EventID    string    `gorm:"size:64;not null" json:"event_id"`
	EventType  string    `gorm:"size:128;not null" json:"event_type"`
	OrderID    string    `gorm:"size:64;not null" json:"order_id"`
	CustomerID string    `gorm:"size:64;not null" json:"customer_id"`
	Message    string    `gorm:"not null" json:"message"`
	CreatedAt  time.Time `gorm:"not null" json:"created_at"`
}

// TableName is the table of Notification.
func (Notification) TableName() string { return "notifications" }

// Module is the notifier: migrations, the idempotent handler and the HTTP
// route. It needs fxrepo.Module and fxevents.Module (martyfx.Modules).
var Module = fx.Options(
	fxrepo.AsMigrations("notifier", mustSub(migrations, "migrations")),
	fxevents.AsHandler(func(db *gorm.DB, codec fxevents.Codec, log *zap.Logger) fxevents.Handler {
		return NewHandler(HandlerCreated, events.TypeOrderCreated, db, codec, log)
	}),
	fxevents.AsHandler(func(db *gorm.DB, codec fxevents.Codec, log *zap.Logger) fxevents.Handler {
		return NewHandler(HandlerConfirmed, events.TypeOrderConfirmed, db, codec, log)
	}),
	fxevents.AsHandler(func(db *gorm.DB, codec fxevents.Codec, log *zap.Logger) fxevents.Handler {
		return NewHandler(HandlerCancelled, events.TypeOrderCancelled, db, codec, log)
	}),
	fxhttp.AsRoute("GET /v1/notifications", NewListHandler),
	// Public when an app with fxauth.Module (the orders binary running the
	// notifier in process) turns authentication on; inert otherwise.
	fxauth.AsRule("GET /v1/notifications", fxauth.Public()),
)

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// Handler records a notification per order event of its type.
type Handler struct {
	name  string
	typ   string
	db    *gorm.DB
	codec fxevents.Codec
	log   *zap.Logger
}

// NewHandler returns the handler of one event type (events.TypeOrderCreated,
// TypeOrderConfirmed or TypeOrderCancelled), wrapped in fxevents.Idempotent.
func NewHandler(name, eventType string, db *gorm.DB, codec fxevents.Codec, log *zap.Logger) fxevents.Handler {
	return fxevents.Idempotent(&Handler{name: name, typ: eventType, db: db, codec: codec, log: log})
}

// Name implements fxevents.Handler.
func (h *Handler) Name() string { return h.name }

// EventTypes implements fxevents.Handler.
func (h *Handler) EventTypes() []string { return []string{h.typ} }

// Handle decodes the event and inserts its notification in the inbox's
// transaction (fxrepo.DB joins it), so it commits with the inbox row or not
// at all.
func (h *Handler) Handle(ctx context.Context, env fxevents.Envelope) error {
	n := Notification{EventID: env.ID, EventType: env.Type, CreatedAt: time.Now().UTC()}
	switch env.Type {
	case events.TypeOrderCreated:
		var ev events.OrderCreated
		if err := h.codec.Decode(env.ContentType(), env.Payload, &ev); err != nil {
			return fxevents.Permanent(fmt.Errorf("notifier: decode %s %s: %w", env.Type, env.ID, err))
		}
		n.OrderID, n.CustomerID = ev.OrderID, ev.CustomerID
		n.Message = fmt.Sprintf("Dear %s, we received your order %s (%s, total %s).",
			ev.CustomerID, ev.OrderID, plural(ev.Items, "line"), money(ev.TotalCents))
	case events.TypeOrderConfirmed:
		var ev events.OrderConfirmed
		if err := h.codec.Decode(env.ContentType(), env.Payload, &ev); err != nil {
			return fxevents.Permanent(fmt.Errorf("notifier: decode %s %s: %w", env.Type, env.ID, err))
		}
		n.OrderID, n.CustomerID = ev.OrderID, ev.CustomerID
		n.Message = fmt.Sprintf("Dear %s, your order %s is confirmed: payment of %s reserved.",
			ev.CustomerID, ev.OrderID, money(ev.TotalCents))
	case events.TypeOrderCancelled:
		var ev events.OrderCancelled
		if err := h.codec.Decode(env.ContentType(), env.Payload, &ev); err != nil {
			return fxevents.Permanent(fmt.Errorf("notifier: decode %s %s: %w", env.Type, env.ID, err))
		}
		n.OrderID, n.CustomerID = ev.OrderID, ev.CustomerID
		n.Message = fmt.Sprintf("Dear %s, your order %s was cancelled", ev.CustomerID, ev.OrderID)
		if ev.Reason != "" {
			n.Message += ": " + ev.Reason
		}
		n.Message += "."
	default:
		return fxevents.Permanent(fmt.Errorf("notifier: unexpected event type %q", env.Type))
	}
	if err := fxrepo.DB(ctx, h.db).Create(&n).Error; err != nil {
		return fmt.Errorf("notifier: record notification of %s: %w", env.ID, err)
	}
	h.log.Info("notifier: notification recorded",
		zap.String("order_id", n.OrderID), zap.String("event_type", n.EventType), zap.String("event_id", n.EventID))
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func money(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }

// ListResponse is the body of GET /v1/notifications.
type ListResponse struct {
	Notifications []Notification `json:"notifications"`
	NextPageToken string         `json:"next_page_token,omitempty"`
}

// NewListHandler serves GET /v1/notifications, oldest first:
// ?order_id= and ?customer_id= filter, ?page_size= (1 to 500, default 100) and
// ?page_token= page through.
func NewListHandler(db *gorm.DB) http.Handler {
	repo := fxrepo.NewRepository[Notification, int64](db)
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
			if opts.Cursor != "" && strings.Contains(err.Error(), "invalid cursor") {
				fxhttp.WriteProblem(w, r, http.StatusBadRequest, "page_token: not a token of this listing")
				return
			}
			fxhttp.WriteError(w, r, fmt.Errorf("notifier: list notifications: %w", err))
			return
		}
		resp := ListResponse{Notifications: page.Items, NextPageToken: page.Next}
		if resp.Notifications == nil {
			resp.Notifications = []Notification{}
		}
		fxhttp.WriteJSON(w, http.StatusOK, resp)
	})
}
