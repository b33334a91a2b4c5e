package fxrepo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"
)

// sqliteDialector is glebarez/sqlite without its connect-at-construction
// version query: the bundled SQLite (modernc) is always >= 3.35, so the
// RETURNING clauses are registered as the driver would, and the first
// connection is made by the ping at start.
type sqliteDialector struct{ sqlite.Dialector }

func (d sqliteDialector) Initialize(db *gorm.DB) error {
	if d.Conn != nil {
		db.ConnPool = d.Conn
	} else {
		conn, err := sql.Open(sqlite.DriverName, d.DSN)
		if err != nil {
			return err
		}
		db.ConnPool = conn
	}
	callbacks.RegisterDefaultCallbacks(db, &callbacks.Config{
		CreateClauses:        []string{"INSERT", "VALUES", "ON CONFLICT", "RETURNING"},
		UpdateClauses:        []string{"UPDATE", "SET", "FROM", "WHERE", "RETURNING"},
		DeleteClauses:        []string{"DELETE", "FROM", "WHERE", "RETURNING"},
		LastInsertIDReversed: true,
	})
	for k, v := range d.ClauseBuilders() {
		db.ClauseBuilders[k] = v
	}
	return nil
}

// target is the resolved connection target of a Config.
type target struct {
	driver   string
	dsn      string // what the driver gets
	redacted string // for logs and errors
	secret   string // the password, scrubbed from error messages
	memory   bool   // in-memory SQLite: one connection, never recycled
	name     string // database name, the db_name label of pool metrics
}

// resolve turns the config into the driver's DSN: SQLite gets its file
// default and pragmas (WAL, busy_timeout, foreign keys, immediate write
// transactions); PostgreSQL's password is found for redaction.
func resolve(cfg Config, service string) (target, error) {
	switch cfg.Driver {
	case DriverPostgres:
		t := target{driver: DriverPostgres, dsn: cfg.DSN}
		pc, err := pgx.ParseConfig(cfg.DSN)
		if err != nil {
			// pgx's parse errors never echo the password.
			return t, fmt.Errorf("fxrepo: parse MARTY_DB_DSN for postgres: %w", err)
		}
		t.secret = pc.Password
		t.name = pc.Database
		t.redacted = redactPostgres(cfg.DSN)
		return t, nil
	default:
		return resolveSQLite(cfg, service), nil
	}
}

func resolveSQLite(cfg Config, service string) target {
	dsn := strings.TrimSpace(cfg.DSN)
	if dsn == "" {
		dsn = "file:" + defaultSQLiteFile(service)
	}
	path, query, _ := strings.Cut(dsn, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		q = url.Values{}
	}
	memory := path == ":memory:" || path == "file::memory:" || q.Get("mode") == "memory"
	if path == ":memory:" || path == "file::memory:" {
		// A private named database, so that the pool's connection and
		// any reconnect see the same data.
		var b [6]byte
		_, _ = rand.Read(b[:])
		path = "file:martyfx-" + hex.EncodeToString(b[:])
		q.Set("mode", "memory")
	}
	if memory {
		if q.Get("cache") == "" {
			q.Set("cache", "shared")
		}
	}
	pragmas := map[string]bool{}
	for _, p := range q["_pragma"] {
		name, _, _ := strings.Cut(strings.ToLower(p), "(")
		name, _, _ = strings.Cut(name, "=")
		pragmas[strings.TrimSpace(name)] = true
	}
	add := func(name, value string) {
		if !pragmas[name] {
			q.Add("_pragma", name+"("+value+")")
		}
	}
	add("busy_timeout", fmt.Sprint(cfg.BusyTimeout.Milliseconds()))
	if !memory {
		add("journal_mode", "WAL")
		add("synchronous", "NORMAL")
	}
	add("foreign_keys", "1")
	if q.Get("_txlock") == "" {
		q.Set("_txlock", "immediate")
	}
	full := path + "?" + q.Encode()
	name := strings.TrimPrefix(path, "file:")
	if !memory {
		name = filepath.Base(name)
	}
	return target{driver: DriverSQLite, dsn: full, redacted: full, memory: memory, name: name}
}

var pgKeyValuePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// redactPostgres hides the password of a URL or key=value DSN.
func redactPostgres(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return pgKeyValuePassword.ReplaceAllString(dsn, "${1}xxxxx")
}

// scrubbedError hides a secret that a driver may have put in its message.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

func (t target) scrub(err error) error {
	if err == nil || t.secret == "" || !strings.Contains(err.Error(), t.secret) {
		return err
	}
	return &scrubbedError{msg: strings.ReplaceAll(err.Error(), t.secret, "xxxxx"), err: err}
}

// dialector returns the GORM dialector of the target.
func (t target) dialector() gorm.Dialector {
	if t.driver == DriverPostgres {
		return postgres.New(postgres.Config{DSN: t.dsn})
	}
	return sqliteDialector{sqlite.Dialector{DSN: t.dsn}}
}

// configurePool applies the pool settings (in-memory SQLite: one connection
// that is never closed, or the database would vanish).
func configurePool(sqlDB *sql.DB, cfg Config, t target) {
	if t.memory {
		sqlDB.SetMaxOpenConns(1)
		sqlDB.SetMaxIdleConns(1)
		sqlDB.SetConnMaxLifetime(0)
		sqlDB.SetConnMaxIdleTime(0)
		return
	}
	sqlDB.SetMaxOpenConns(cfg.MaxOpenConns)
	sqlDB.SetMaxIdleConns(cfg.MaxIdleConns)
	sqlDB.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	sqlDB.SetConnMaxIdleTime(cfg.ConnMaxIdleTime)
}

// ping pings until it succeeds, ctx ends or the connect timeout passes,
// waiting with exponential backoff between attempts.
func ping(ctx context.Context, sqlDB *sql.DB, cfg Config, t target, log *zap.Logger) error {
	if cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	} else if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	wait := cfg.ConnectBackoff
	var last error
	for attempt := 1; ; attempt++ {
		err := sqlDB.PingContext(ctx)
		if err == nil {
			if attempt > 1 {
				log.Info("database reachable", zap.String("db", t.redacted), zap.Int("attempts", attempt))
			}
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err
		}
		deadline, _ := ctx.Deadline()
		if ctx.Err() != nil || time.Until(deadline) < wait {
			return fmt.Errorf("fxrepo: connect %s at %s: gave up after %d attempts: %w",
				t.driver, t.redacted, attempt, t.scrub(last))
		}
		log.Warn("database not reachable yet; retrying",
			zap.String("db", t.redacted), zap.Int("attempt", attempt), zap.Duration("backoff", wait), zap.Error(t.scrub(err)))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("fxrepo: connect %s at %s: gave up after %d attempts: %w",
				t.driver, t.redacted, attempt, t.scrub(last))
		case <-timer.C:
		}
		wait = min(wait*2, cfg.ConnectBackoffMax)
	}
}
