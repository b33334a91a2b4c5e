package fxrepo

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// target is the resolved connection target of a Config.
type target struct {
	driver   string
	dsn      string   // what the driver gets
	redacted string   // for logs and errors
	secrets  []string // the password in the forms it may take, scrubbed from error messages
	memory   bool     // in-memory SQLite: one connection, never recycled
	name     string   // database name, the db_name label of pool metrics
}

// resolve turns the config into the driver's DSN: SQLite gets its file
// default and pragmas (WAL, busy_timeout, foreign keys, immediate write
// transactions); PostgreSQL's password is found for redaction.
func resolve(cfg Config, service string) (target, error) {
	switch cfg.Driver {
	case DriverPostgres:
		t, pc, err := postgresTarget(cfg.DSN)
		if err != nil {
			return t, fmt.Errorf("fxrepo: parse MARTY_DB_DSN for postgres: %w", err)
		}
		t.name = pc.Database
		// What pgx parsed as a password is never shown; a DSN that hides
		// one elsewhere (a raw '/' in it makes the rest a database name)
		// has it scrubbed from the display too.
		t.redacted = scrubText(redactPostgres(&pc.Config), t.secrets)
		return t, nil
	default:
		return resolveSQLite(cfg, service), nil
	}
}

// postgresTarget finds the secrets of a PostgreSQL DSN: the passwords
// written in it and the one pgx will send (from the DSN, PGPASSWORD or
// .pgpass). A DSN pgx cannot parse gives its parse error, scrubbed (pgx
// redacts its parse errors on a best-effort basis).
func postgresTarget(dsn string) (target, *pgx.ConnConfig, error) {
	t := target{driver: DriverPostgres, dsn: dsn, redacted: "MARTY_DB_DSN"}
	t.secrets = secretForms(dsnSecrets(dsn)...)
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return t, nil, t.scrub(err)
	}
	t.secrets = secretForms(append(dsnSecrets(dsn), pc.Password)...)
	return t, pc, nil
}

// RedactError returns err with the passwords of the PostgreSQL DSN dsn
// replaced by "xxxxx" in its text, in every form a driver or a parser may
// print them (as written, URL-escaped, quoted; the password pgx reads from
// PGPASSWORD or .pgpass too); errors.Is and errors.As still see the chain.
// For code that connects with the same DSN as the Module (fxevents' LISTEN
// connection) and logs or returns the connection's errors.
func RedactError(err error, dsn string) error {
	if err == nil || dsn == "" {
		return err
	}
	t, _, _ := postgresTarget(dsn)
	return t.scrub(err)
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

// redactPostgres shows the connection target pgx parsed from the DSN, as a
// URL without the password: postgres://user:xxxxx@host:5432,host2:5432/db.
// Built from pgx's own parse of the DSN (either form, any password
// character), it cannot hold the password.
func redactPostgres(c *pgconn.Config) string {
	var b strings.Builder
	b.WriteString("postgres://")
	if c.User != "" {
		if c.Password != "" {
			b.WriteString(url.UserPassword(c.User, "xxxxx").String())
		} else {
			b.WriteString(url.User(c.User).String())
		}
		b.WriteByte('@')
	}
	hosts := []string{hostPort(c.Host, c.Port)}
	for _, f := range c.Fallbacks {
		if h := hostPort(f.Host, f.Port); !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	b.WriteString(strings.Join(hosts, ","))
	b.WriteString("/" + url.PathEscape(c.Database))
	return b.String()
}

func hostPort(host string, port uint16) string {
	if strings.HasPrefix(host, "/") {
		return url.PathEscape(host) // a Unix socket directory
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// dsnSecrets finds the values of the password and sslpassword settings of
// a DSN in either form, as written and decoded, without needing the DSN to
// parse: they are scrubbed from errors, including pgx's parse errors.
func dsnSecrets(dsn string) []string {
	var out []string
	if rest, ok := strings.CutPrefix(dsn, "postgres://"); ok || strings.HasPrefix(dsn, "postgresql://") {
		if !ok {
			rest = strings.TrimPrefix(dsn, "postgresql://")
		}
		// The userinfo ends at the first '@' before any '/', as pgx reads it;
		// with a '/' in the password, at the last '@' (a malformed DSN).
		for _, end := range []int{strings.IndexAny(rest, "@/"), strings.LastIndex(rest, "@")} {
			if end >= 0 && rest[end] == '@' {
				if _, pw, ok := strings.Cut(rest[:end], ":"); ok {
					out = append(out, pw)
					if dec, err := url.PathUnescape(pw); err == nil {
						out = append(out, dec)
					}
				}
			}
		}
		if _, query, ok := strings.Cut(rest, "?"); ok {
			for _, kv := range strings.Split(query, "&") {
				k, v, _ := strings.Cut(kv, "=")
				if dk, err := url.QueryUnescape(k); err == nil && (dk == "password" || dk == "sslpassword") {
					out = append(out, v)
					if dv, err := url.QueryUnescape(v); err == nil {
						out = append(out, dv)
					}
				}
			}
		}
		return out
	}
	for _, m := range pgKeyValueSecret.FindAllStringSubmatch(dsn, -1) {
		v := m[2]
		out = append(out, v)
		if inner, ok := strings.CutPrefix(v, "'"); ok {
			if len(inner) > 0 && strings.HasSuffix(inner, "'") && !strings.HasSuffix(inner, `\'`) {
				inner = inner[:len(inner)-1]
			}
			out = append(out, inner, unquoteKeyValue(inner))
		}
	}
	return out
}

// pgKeyValueSecret matches password= and sslpassword= settings of a
// key=value DSN: a quoted value (with \' and \\ escapes) or a bare one.
var pgKeyValueSecret = regexp.MustCompile(`(?:^|\s)(password|sslpassword)\s*=\s*('(?:[^'\\]|\\.)*'?|\S*)`)

func unquoteKeyValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// secretForms returns each secret as written and in the encodings an error
// text may show it in: URL path, userinfo and query escaping, key=value
// quoting, Go quoting. Empty secrets are dropped; longer forms come first
// so a form that contains another is replaced whole.
func secretForms(secrets ...string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		add(s)
		add(url.PathEscape(s))
		add(url.QueryEscape(s))
		add(strings.TrimPrefix(url.UserPassword("", s).String(), ":"))
		add(strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s))
		q := strconv.Quote(s)
		add(q[1 : len(q)-1])
	}
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// scrubbedError hides a secret that a driver may have put in its message.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub returns err with every form of the target's secrets replaced by
// "xxxxx" in its text; the chain (errors.Is, errors.As) is kept.
func (t target) scrub(err error) error {
	if err == nil || len(t.secrets) == 0 {
		return err
	}
	msg := err.Error()
	clean := scrubText(msg, t.secrets)
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}

func scrubText(s string, secrets []string) string {
	for _, secret := range secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	return s
}

// dialector returns the GORM dialector of the target: PostgreSQL's, built
// in, or the registered Dialect of its driver.
func (t target) dialector() (gorm.Dialector, error) {
	if t.driver == DriverPostgres {
		return postgres.New(postgres.Config{DSN: t.dsn, OptionOpenDB: []stdlib.OptionOpenDB{stdlib.OptionShouldPing(shouldPing)}}), nil
	}
	d, err := dialectFor(t.driver)
	if err != nil {
		return nil, err
	}
	return d.Dialector(t.dsn), nil
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
