package fxrepo

import (
	"errors"
	"fmt"

	gosqlite "github.com/glebarez/go-sqlite"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"gorm.io/gorm"
)

// ErrNotFound is returned (wrapped in *Error) when no row has the id, or it
// is soft-deleted. Test with errors.Is.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned (wrapped in *Error) when a write collides: a
// unique constraint violation, or an update of a stale Version. Test with
// errors.Is.
var ErrConflict = errors.New("conflict")

// Error is a repository error about one entity. errors.Is(err, ErrNotFound)
// or errors.Is(err, ErrConflict) tells the kind; the driver's error, when
// there is one, is wrapped too. It carries its gRPC status (NotFound,
// AlreadyExists, or Aborted for a stale version), so a gRPC handler may
// return it as is.
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
	msg += ": " + e.Kind.Error()
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

// GRPCStatus maps the error to a gRPC status: NotFound, AlreadyExists for a
// unique violation, Aborted for a stale version (the client may re-read and
// retry).
func (e *Error) GRPCStatus() *status.Status {
	code := codes.Unknown
	switch {
	case errors.Is(e.Kind, ErrNotFound):
		code = codes.NotFound
	case e.Stale:
		code = codes.Aborted
	case errors.Is(e.Kind, ErrConflict):
		code = codes.AlreadyExists
	}
	return status.New(code, e.Error())
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
	var sq *gosqlite.Error
	if errors.As(err, &sq) {
		// SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY.
		return sq.Code() == 2067 || sq.Code() == 1555
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
