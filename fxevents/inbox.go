package fxevents

import (
	"context"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxrepo"
)

// Idempotent wraps h so that each event takes effect once for it: the
// handler runs in a unit of work that first inserts (h.Name(), event ID)
// into marty_inbox; an event delivered again finds its row and is skipped,
// so the handler's database effects (through fxrepo.DB(ctx, db)) happen
// exactly once. It needs fxrepo.Module (the Module fails at start
// otherwise). Inbox rows are purged after MARTY_EVENTS_RETENTION (7 days
// when it is 0).
func Idempotent(h Handler) Handler {
	return &idempotent{Handler: h}
}

type idempotent struct {
	Handler
}

// Prototypes keeps a typed handler's event types in the Registry.
func (i *idempotent) Prototypes() []Event {
	if t, ok := i.Handler.(Typed); ok {
		return t.Prototypes()
	}
	return nil
}

// Unwrap returns the wrapped handler.
func (i *idempotent) Unwrap() Handler { return i.Handler }

// inbox is what Idempotent handlers use; the dispatcher puts it in the
// handler's context.
type inbox struct {
	db  *gorm.DB
	uow fxrepo.UnitOfWork
}

type inboxKey struct{}

func (i *idempotent) Handle(ctx context.Context, env Envelope) error {
	ib, _ := ctx.Value(inboxKey{}).(*inbox)
	if ib == nil {
		return Permanent(errors.New("fxevents: Idempotent handler run without the inbox (needs fxrepo.Module)"))
	}
	return ib.uow.Do(ctx, func(ctx context.Context) error {
		res := fxrepo.DB(ctx, ib.db).Exec(
			"INSERT INTO marty_inbox (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
			i.Name(), env.ID, time.Now().UnixMicro())
		if res.Error != nil {
			return fmt.Errorf("fxevents: inbox insert: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return nil // already handled
		}
		return i.Handler.Handle(ctx, env)
	})
}

// needsInbox reports whether h (or a handler it wraps) is Idempotent.
func needsInbox(h Handler) bool {
	for h != nil {
		if _, ok := h.(*idempotent); ok {
			return true
		}
		u, ok := h.(interface{ Unwrap() Handler })
		if !ok {
			return false
		}
		h = u.Unwrap()
	}
	return false
}
