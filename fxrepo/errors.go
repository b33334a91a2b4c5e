package fxrepo

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
)

// ErrNotFound is returned (wrapped in *Error) when no row has the id, or it
// is soft-deleted. Test with errors.Is. It is classified
// fxcore.ClassNotFound, also when user code wraps it (clients read "not
// found").
var ErrNotFound error = &sentinel{kind: "not found", class: fxcore.ClassNotFound}

// ErrConflict is returned (wrapped in *Error) when a write collides: a
// unique constraint violation, or an update of a stale Version. Test with
// errors.Is. It is classified fxcore.ClassAlreadyExists, also when user
// code wraps it (clients read "already exists").
var ErrConflict error = &sentinel{kind: "conflict", class: fxcore.ClassAlreadyExists}

// sentinel is a classified sentinel error: "fxrepo: <kind>" in logs, the
// class's message for clients.
type sentinel struct {
	kind  string
	class fxcore.ErrorClass
}

func (s *sentinel) Error() string                 { return "fxrepo: " + s.kind }
func (s *sentinel) ErrorClass() fxcore.ErrorClass { return s.class }
func (s *sentinel) PublicMessage() string         { return s.class.Message() }

// Error is a repository error about one entity. errors.Is(err, ErrNotFound)
// or errors.Is(err, ErrConflict) tells the kind; the driver's error, when
// there is one, is wrapped too. It is an fxcore.Classified error, so the
// servers answer it with the right code and a message that names the entity
// and never the driver's text: NOT_FOUND / 404 "Order 42 not found",
// ALREADY_EXISTS / 409 for a unique violation, ABORTED / 409 for a stale
// version (the client may re-read and retry).
type Error struct {
	// Op is the repository operation: create, get, update, delete.
	Op string
	// Entity is the Go type name of T.
	Entity string
	// ID is the entity's id (nil when unknown).
	ID any
	// Kind is ErrNotFound or ErrConflict.
	Kind error
	// Stale is true for an optimistic-locking conflict.
	Stale bool
	// Err is the driver's error, or nil.
	Err error
}

// Error formats "fxrepo: update Order 42: conflict: stale version".
func (e *Error) Error() string {
	msg := fmt.Sprintf("fxrepo: %s %s", e.Op, e.Entity)
	if e.ID != nil {
		msg += fmt.Sprintf(" %v", e.ID)
	}
	var k *sentinel
	if errors.As(e.Kind, &k) {
		msg += ": " + k.kind
	} else {
		msg += ": " + e.Kind.Error()
	}
	switch {
	case e.Stale:
		msg += ": stale version (the row was changed since it was read)"
	case e.Err != nil && errors.Is(e.Kind, ErrConflict):
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the kind and the driver's error.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// ErrorClass is ClassNotFound, ClassAborted for a stale version (re-read
// and retry) or ClassAlreadyExists for a unique violation.
func (e *Error) ErrorClass() fxcore.ErrorClass {
	switch {
	case errors.Is(e.Kind, ErrNotFound):
		return fxcore.ClassNotFound
	case e.Stale:
		return fxcore.ClassAborted
	case errors.Is(e.Kind, ErrConflict):
		return fxcore.ClassAlreadyExists
	}
	return fxcore.ClassUnknown
}

// PublicMessage names the entity and the id, never the driver's text:
// "Order 42 not found", "Order 42 already exists", "Order 42 was changed
// since it was read; read it again and retry".
func (e *Error) PublicMessage() string {
	what := e.Entity
	if e.ID != nil {
		what += fmt.Sprintf(" %v", e.ID)
	}
	switch e.ErrorClass() {
	case fxcore.ClassNotFound:
		return what + " not found"
	case fxcore.ClassAborted:
		return what + " was changed since it was read; read it again and retry"
	case fxcore.ClassAlreadyExists:
		return what + " already exists"
	}
	return fxcore.ClassUnknown.Message()
}

// IsUniqueViolation reports whether err is a unique (or primary key)
// constraint violation on PostgreSQL (23505) or SQLite.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	var sq sqliteError
	if errors.As(err, &sq) {
		return sq.Code() == sqliteConstraintUnique || sq.Code() == sqliteConstraintPrimaryKey
	}
	return false
}

// IsRetryable reports whether err is a PostgreSQL serialization failure
// (40001) or deadlock (40P01): the whole transaction may succeed if re-run.
func IsRetryable(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "40001" || pg.Code == "40P01"
	}
	return false
}
