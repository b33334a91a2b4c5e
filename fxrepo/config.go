package fxrepo

import (
	"regexp"
	"strings"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Drivers.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// Config is the "db" section: MARTY_DB_<FIELD>.
type Config struct {
	// Driver is sqlite (default, embedded, pure Go) or postgres.
	Driver string `koanf:"driver"`
	// DSN is the data source name. For sqlite "" means the file
	// "<service>.db" in the working directory; ":memory:" or a DSN with
	// mode=memory is an in-memory database (shared cache, one connection).
	// For postgres it is required (URL or key=value form).
	DSN string `koanf:"dsn"`
	// MaxOpenConns bounds the pool (in-memory SQLite always uses 1).
	MaxOpenConns int `koanf:"max_open_conns"`
	// MaxIdleConns is how many idle connections the pool keeps.
	MaxIdleConns int `koanf:"max_idle_conns"`
	// ConnMaxLifetime closes connections older than this (0 keeps them).
	ConnMaxLifetime time.Duration `koanf:"conn_max_lifetime"`
	// ConnMaxIdleTime closes connections idle longer than this (0 keeps them).
	ConnMaxIdleTime time.Duration `koanf:"conn_max_idle_time"`
	// SlowQueryThreshold logs queries slower than this at warn (0 disables).
	SlowQueryThreshold time.Duration `koanf:"slow_query_threshold"`
	// PrepareStmt caches prepared statements per connection.
	PrepareStmt bool `koanf:"prepare_stmt"`
	// Migrate runs the goose migrations registered with AsMigrations at start.
	Migrate bool `koanf:"migrate"`
	// AutoMigrate runs GORM's AutoMigrate for the models registered with
	// AsModel at start. Default: on outside production.
	AutoMigrate bool `koanf:"auto_migrate"`
	// TableCheck says what a registered model whose table does not exist
	// (after the migrations, without auto-migration) does: "start" fails
	// the start (default), "readiness" fails the readiness check until the
	// table exists (the migrations run elsewhere, after the pods start),
	// "off" checks nothing. "" is "start".
	TableCheck string `koanf:"table_check"`
	// ConnectTimeout bounds the ping-with-retry at start; 0 retries until
	// the start deadline (MARTY_START_TIMEOUT).
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// ConnectBackoff is the first wait between ping attempts; it doubles.
	ConnectBackoff time.Duration `koanf:"connect_backoff"`
	// ConnectBackoffMax caps the wait between ping attempts.
	ConnectBackoffMax time.Duration `koanf:"connect_backoff_max"`
	// BusyTimeout is SQLite's busy_timeout: how long a writer waits for the lock.
	BusyTimeout time.Duration `koanf:"busy_timeout"`
	// TxRetries is how many times UnitOfWork.Do re-runs its function after a
	// PostgreSQL serialization failure or deadlock (40001, 40P01).
	TxRetries int `koanf:"tx_retries"`
	// QueryValues puts bound values in spans and logs. Off by default:
	// values may be personal data or secrets.
	QueryValues bool `koanf:"query_values"`
}

// DefaultConfig returns the defaults for development: SQLite, auto-migration on.
func DefaultConfig() Config {
	return Config{
		Driver:             DriverSQLite,
		MaxOpenConns:       10,
		MaxIdleConns:       5,
		ConnMaxLifetime:    30 * time.Minute,
		ConnMaxIdleTime:    5 * time.Minute,
		SlowQueryThreshold: 200 * time.Millisecond,
		Migrate:            true,
		AutoMigrate:        true,
		TableCheck:         tableCheckStart,
		ConnectBackoff:     100 * time.Millisecond,
		ConnectBackoffMax:  2 * time.Second,
		BusyTimeout:        5 * time.Second,
		TxRetries:          3,
	}
}

// DefaultConfigFor returns the defaults for a service: auto-migration is
// off in production.
func DefaultConfigFor(info fxcore.ServiceInfo) Config {
	c := DefaultConfig()
	c.AutoMigrate = !info.IsProduction()
	return c
}

// Validate checks the values.
func (c Config) Validate() error {
	if err := fxcore.OneOf("driver", c.Driver, DriverSQLite, DriverPostgres); err != nil {
		return err
	}
	if c.TableCheck != "" {
		if err := fxcore.OneOf("table_check", c.TableCheck, tableCheckStart, tableCheckReadiness, tableCheckOff); err != nil {
			return err
		}
	}
	if c.Driver == DriverPostgres && strings.TrimSpace(c.DSN) == "" {
		return fxcore.Invalid("dsn", c.DSN, "a PostgreSQL DSN such as postgres://user:pass@host:5432/db when MARTY_DB_DRIVER=postgres")
	}
	if c.MaxOpenConns < 0 {
		return fxcore.Invalid("max_open_conns", c.MaxOpenConns, "0 (unlimited) or more")
	}
	if c.MaxIdleConns < 0 {
		return fxcore.Invalid("max_idle_conns", c.MaxIdleConns, "0 or more")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"conn_max_lifetime", c.ConnMaxLifetime}, {"conn_max_idle_time", c.ConnMaxIdleTime},
		{"slow_query_threshold", c.SlowQueryThreshold}, {"connect_timeout", c.ConnectTimeout},
		{"busy_timeout", c.BusyTimeout},
	} {
		if d.v < 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a duration of 0 or more")
		}
	}
	if c.ConnectBackoff <= 0 {
		return fxcore.Invalid("connect_backoff", c.ConnectBackoff.String(), "a positive duration")
	}
	if c.ConnectBackoffMax < c.ConnectBackoff {
		return fxcore.Invalid("connect_backoff_max", c.ConnectBackoffMax.String(), "a duration of at least MARTY_DB_CONNECT_BACKOFF")
	}
	if c.TxRetries < 0 {
		return fxcore.Invalid("tx_retries", c.TxRetries, "0 or more")
	}
	return nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// defaultSQLiteFile is the database file for a service: "<name>.db".
func defaultSQLiteFile(service string) string {
	name := strings.Trim(unsafeName.ReplaceAllString(service, "_"), "._-")
	if name == "" {
		name = "martyfx"
	}
	return name + ".db"
}
