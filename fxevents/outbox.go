package fxevents

import (
	"errors"

	"gorm.io/gorm"
)

// ErrNoTransaction is returned by the outbox's Publish when
// MARTY_EVENTS_REQUIRE_TX is true and the context has no unit-of-work
// transaction.
var ErrNoTransaction = errors.New("fxevents: publish outside a transaction (MARTY_EVENTS_REQUIRE_TX=true): call it inside fxrepo.UnitOfWork.Do")

func newOutboxDeadLetters(db *gorm.DB, cfg Config) DeadLetterStore { return nil }

func newOutboxBus(in busIn) (Bus, error) {
	return nil, errors.New("fxevents: outbox not implemented yet")
}

func needsInbox(h Handler) bool { return false }
