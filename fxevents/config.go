package fxevents

import (
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// The values of Config.Bus.
const (
	// BusMemory dispatches in process; queued events are lost on a crash.
	BusMemory = "memory"
	// BusOutbox stores events in the marty_outbox table in the publisher's
	// transaction and relays them from there.
	BusOutbox = "outbox"
)

// The values of Config.BackPressure.
const (
	// BackPressureWait makes Publish wait for room until its context ends.
	BackPressureWait = "wait"
	// BackPressureFail makes Publish fail at once with ErrBufferFull.
	BackPressureFail = "fail"
)

// Config is the "events" section (MARTY_EVENTS_<FIELD>).
type Config struct {
	// Bus is memory (default) or outbox.
	Bus string `koanf:"bus"`
	// Sync makes the memory bus run every handler inside Publish and return
	// their joined errors (for tests and scripts).
	Sync bool `koanf:"sync"`
	// QueueSize is the capacity of each handler's queue, split evenly over
	// its workers.
	QueueSize int `koanf:"queue_size"`
	// Workers is the number of workers per handler. Events with the same
	// AggregateID always go to the same worker, so they run in publish order.
	Workers int `koanf:"workers"`
	// BackPressure is what Publish does when a queue is full: wait or fail.
	BackPressure string `koanf:"back_pressure"`
	// MaxAttempts is how many times a handler runs an event before it is
	// dead-lettered (1 means no retry).
	MaxAttempts int `koanf:"max_attempts"`
	// BackoffInitial is the delay before the second attempt; each further
	// attempt doubles it, up to BackoffMax, with ±20% jitter.
	BackoffInitial time.Duration `koanf:"backoff_initial"`
	// BackoffMax caps the retry delay.
	BackoffMax time.Duration `koanf:"backoff_max"`
	// HandlerTimeout bounds one attempt of one handler (0 for none).
	HandlerTimeout time.Duration `koanf:"handler_timeout"`
	// DeadLetterCapacity is the size of the in-memory dead-letter ring shown
	// at /events/dead on the admin server (memory bus).
	DeadLetterCapacity int `koanf:"dead_letter_capacity"`

	// RequireTx makes the outbox's Publish fail with ErrNoTransaction when
	// the context carries no unit-of-work transaction.
	RequireTx bool `koanf:"require_tx"`
	// Retention keeps delivered outbox rows and inbox rows this long before
	// they are purged; 0 deletes outbox rows as soon as they are delivered
	// (inbox rows are then kept 7 days).
	Retention time.Duration `koanf:"retention"`
	// Relay runs the outbox relay in this process (default true). Turn it
	// off in publish-only processes (jobs, CLIs) of a service whose
	// replicas relay.
	Relay bool `koanf:"relay"`
	// PollInterval is how often the relay looks for due rows when nothing
	// woke it (NOTIFY on Postgres, an in-process signal on SQLite).
	PollInterval time.Duration `koanf:"poll_interval"`
	// BatchSize is how many rows a relay worker claims at once.
	BatchSize int `koanf:"batch_size"`
	// RelayWorkers is the number of claiming workers per replica (Postgres;
	// SQLite always uses one).
	RelayWorkers int `koanf:"relay_workers"`
	// Partitions is the number of ordering partitions of the outbox: an
	// aggregate hashes to one partition and a partition is relayed by one
	// worker at a time across all replicas. Changing it while rows are
	// pending may reorder those rows.
	Partitions int `koanf:"partitions"`
	// LagAlert is the age of the oldest due outbox row past which the
	// readiness check reports degraded and the default alert fires.
	LagAlert time.Duration `koanf:"lag_alert"`
}

// DefaultConfig returns the defaults: memory bus, 1024-slot queues, 4
// workers per handler, wait on a full queue, 5 attempts from 100ms to 30s,
// 30s handler timeout.
func DefaultConfig() Config {
	return Config{
		Bus:                BusMemory,
		QueueSize:          1024,
		Workers:            4,
		BackPressure:       BackPressureWait,
		MaxAttempts:        5,
		BackoffInitial:     100 * time.Millisecond,
		BackoffMax:         30 * time.Second,
		HandlerTimeout:     30 * time.Second,
		DeadLetterCapacity: 1000,
		Relay:              true,
		PollInterval:       time.Second,
		BatchSize:          500,
		RelayWorkers:       4,
		Partitions:         64,
		LagAlert:           time.Minute,
	}
}

// Validate checks the values.
func (c Config) Validate() error {
	if err := fxcore.OneOf("bus", c.Bus, BusMemory, BusOutbox); err != nil {
		return err
	}
	if err := fxcore.OneOf("back_pressure", c.BackPressure, BackPressureWait, BackPressureFail); err != nil {
		return err
	}
	positive := []struct {
		key string
		v   int
	}{
		{"queue_size", c.QueueSize}, {"workers", c.Workers}, {"max_attempts", c.MaxAttempts},
		{"dead_letter_capacity", c.DeadLetterCapacity}, {"batch_size", c.BatchSize},
		{"relay_workers", c.RelayWorkers}, {"partitions", c.Partitions},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fxcore.Invalid(p.key, p.v, "a positive integer")
		}
	}
	if c.QueueSize < c.Workers {
		return fxcore.Invalid("queue_size", c.QueueSize, "at least workers (one slot per worker)")
	}
	durations := []struct {
		key string
		v   time.Duration
	}{
		{"backoff_initial", c.BackoffInitial}, {"backoff_max", c.BackoffMax},
		{"poll_interval", c.PollInterval}, {"lag_alert", c.LagAlert},
	}
	for _, d := range durations {
		if d.v <= 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a positive duration")
		}
	}
	if c.BackoffMax < c.BackoffInitial {
		return fxcore.Invalid("backoff_max", c.BackoffMax.String(), "at least backoff_initial ("+c.BackoffInitial.String()+")")
	}
	if c.HandlerTimeout < 0 {
		return fxcore.Invalid("handler_timeout", c.HandlerTimeout.String(), "a duration >= 0 (0 for none)")
	}
	if c.Retention < 0 {
		return fxcore.Invalid("retention", c.Retention.String(), "a duration >= 0")
	}
	return nil
}
