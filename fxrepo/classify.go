package fxrepo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
)

// classifierOption registers Classify with the servers (fxgrpc, fxhttp), so
// a database error a handler returns, raw or wrapped, is answered with its
// class's code and a message without the driver's text.
var classifierOption = fxcore.AsClassifier(fxcore.Classifier(Classify))

// MessageUnavailable is what clients read when the database cannot be
// reached, is shutting down or refuses connections.
const MessageUnavailable = "the database is unavailable; retry later"

// sqliteError is the SQLite driver's error (modernc's, through
// glebarez/go-sqlite: *sqlite.Error), matched by its method so that fxrepo
// does not link the driver (fxrepo/sqlite does).
type sqliteError interface {
	error
	Code() int
}

// SQLite result codes (https://sqlite.org/rescode.html).
const (
	sqliteBusy                 = 5
	sqliteLocked               = 6
	sqliteFull                 = 13
	sqliteTooBig               = 18
	sqliteMismatch             = 20
	sqliteConstraintCheck      = 275
	sqliteConstraintForeignKey = 787
	sqliteConstraintNotNull    = 1299
	sqliteConstraintPrimaryKey = 1555
	sqliteConstraintTrigger    = 1811 // also a RESTRICT foreign key action
	sqliteConstraintUnique     = 2067
	sqliteConstraint           = 19
)

// dataExceptions describes the class 22 conditions clients most often
// cause, by SQLSTATE: what to change, in words.
var dataExceptions = map[string]struct{ name, what string }{
	"22001": {"string_data_right_truncation", "a text value is too long for its column"},
	"22003": {"numeric_value_out_of_range", "a number is out of range for its column"},
	"22004": {"null_value_not_allowed", "a required value is missing"},
	"22007": {"invalid_datetime_format", "a date or time value has an invalid format"},
	"22008": {"datetime_field_overflow", "a date or time value is out of range"},
	"22012": {"division_by_zero", "a value leads to a division by zero"},
	"22021": {"character_not_in_repertoire", "a text value holds bytes the database cannot store (such as a NUL byte, \\u0000)"},
	"22023": {"invalid_parameter_value", "a parameter value is invalid"},
	"22P02": {"invalid_text_representation", "a value has the wrong format for its column"},
	"22P05": {"untranslatable_character", "a text value holds a character the database encoding cannot store"},
}

// Classify is the fxcore.Classifier of database errors, PostgreSQL's and
// SQLite's, anywhere in err's chain. It knows:
//
//   - connections refused, lost or closed, a server shutting down or not
//     accepting connections yet (SQLSTATE class 08, 57P01-57P05), too many
//     connections or no resources (class 53), a read-only server during a
//     failover (25006), I/O errors (class 58), SQLite busy or locked:
//     ClassUnavailable (retry later);
//   - serialization failures and deadlocks (40001, 40P01), a lock not
//     available (55P03): ClassAborted (retry the transaction);
//   - data exceptions (class 22, such as a NUL byte in a text value), not
//     null and check violations (23502, 23514), a value too large (54000):
//     ClassInvalid;
//   - unique and exclusion violations (23505, 23P01): ClassAlreadyExists;
//   - foreign key violations (23503): ClassFailedPrecondition;
//   - a statement timeout (57014): ClassDeadlineExceeded;
//   - gorm.ErrRecordNotFound: ClassNotFound.
//
// The message names the condition and the SQLSTATE (and the column of a
// not-null violation), never the server's text, a constraint or table name,
// the host, user or database. Anything else (a syntax error, a missing table) is not
// classified: clients get "internal error" and a reference to the log line
// with the full error.
func Classify(err error) (fxcore.ErrorClass, string, bool) {
	if err == nil {
		return 0, "", false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return classifyPg(pg)
	}
	var sq sqliteError
	if errors.As(err, &sq) {
		return classifySQLite(sq)
	}
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fxcore.ClassNotFound, "not found", true
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return fxcore.ClassAlreadyExists, "a row with the same key already exists", true
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return fxcore.ClassFailedPrecondition, "a referenced row does not exist, or the row is still referenced", true
	case errors.Is(err, gorm.ErrCheckConstraintViolated):
		return fxcore.ClassInvalid, "a value violates a rule of the database", true
	}
	if connectionFailed(err) {
		return fxcore.ClassUnavailable, MessageUnavailable, true
	}
	return 0, "", false
}

func classifyPg(pg *pgconn.PgError) (fxcore.ErrorClass, string, bool) {
	code := pg.Code
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "58"),
		code == "57P01", code == "57P02", code == "57P03", code == "57P04", code == "57P05",
		code == "25006":
		return fxcore.ClassUnavailable, MessageUnavailable, true
	case code == "40001" || code == "40P01":
		return fxcore.ClassAborted, "the transaction conflicted with a concurrent one; retry it", true
	case code == "55P03":
		return fxcore.ClassAborted, "a row is locked by a concurrent transaction; retry", true
	case code == "57014":
		return fxcore.ClassDeadlineExceeded, "the database query took too long", true
	case strings.HasPrefix(code, "22"):
		d, ok := dataExceptions[code]
		if !ok {
			return fxcore.ClassInvalid, fmt.Sprintf("a value was rejected by the database (SQLSTATE %s)", code), true
		}
		return fxcore.ClassInvalid, fmt.Sprintf("a value was rejected by the database: %s (SQLSTATE %s, %s)", d.what, code, d.name), true
	case code == "23502":
		return fxcore.ClassInvalid, "a required value is missing" + column(pg.ColumnName) + " (SQLSTATE 23502, not_null_violation)", true
	case code == "23514":
		return fxcore.ClassInvalid, "a value violates a rule of the database (SQLSTATE 23514, check_violation)", true
	case code == "54000":
		return fxcore.ClassInvalid, "a value is too large for the database (SQLSTATE 54000, program_limit_exceeded)", true
	case code == "23505":
		return fxcore.ClassAlreadyExists, "a row with the same key already exists (SQLSTATE 23505, unique_violation)", true
	case code == "23P01":
		return fxcore.ClassAlreadyExists, "a row conflicts with an existing one (SQLSTATE 23P01, exclusion_violation)", true
	case code == "23503":
		return fxcore.ClassFailedPrecondition, "a referenced row does not exist, or the row is still referenced (SQLSTATE 23503, foreign_key_violation)", true
	}
	return 0, "", false
}

func column(name string) string {
	if name == "" {
		return ""
	}
	return " (column " + name + ")"
}

func classifySQLite(sq sqliteError) (fxcore.ErrorClass, string, bool) {
	switch code := sq.Code(); {
	case code == sqliteConstraintUnique || code == sqliteConstraintPrimaryKey:
		return fxcore.ClassAlreadyExists, "a row with the same key already exists", true
	case code == sqliteConstraintForeignKey || code == sqliteConstraintTrigger:
		return fxcore.ClassFailedPrecondition, "a referenced row does not exist, or the row is still referenced", true
	case code == sqliteConstraintNotNull:
		return fxcore.ClassInvalid, "a required value is missing", true
	case code == sqliteConstraintCheck:
		return fxcore.ClassInvalid, "a value violates a rule of the database", true
	case code&0xff == sqliteConstraint:
		return fxcore.ClassFailedPrecondition, "the change violates a constraint of the database", true
	case code&0xff == sqliteTooBig:
		return fxcore.ClassInvalid, "a value is too large for the database", true
	case code&0xff == sqliteMismatch:
		return fxcore.ClassInvalid, "a value has the wrong type for its column", true
	case code&0xff == sqliteBusy || code&0xff == sqliteLocked:
		return fxcore.ClassUnavailable, "the database is busy; retry later", true
	case code&0xff == sqliteFull:
		return fxcore.ClassUnavailable, MessageUnavailable, true
	}
	return 0, "", false
}

// connectionFailed reports a failure of the connection rather than of the
// statement: a connection refused or lost, a pool closed. It knows the
// errors of pgx (its connect error, and its network failures, which all
// have pgconn's SafeToRetry method) and of database/sql; a context error is
// not one.
func connectionFailed(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connect *pgconn.ConnectError
	var pgconnErr interface{ SafeToRetry() bool }
	switch {
	case errors.As(err, &connect), errors.As(err, &pgconnErr),
		errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone):
		return true
	}
	return false
}

// connectionLost reports whether err means the transaction's connection is
// gone (or was never had): the server rolled the transaction back, so
// re-running it is as safe as after a serialization failure.
func connectionLost(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		c := pg.Code
		return strings.HasPrefix(c, "08") || c == "57P01" || c == "57P02" || c == "57P03" || c == "53300"
	}
	return connectionFailed(err)
}
