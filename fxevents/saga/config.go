package saga

import (
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Config is the "saga" section (MARTY_SAGA_<FIELD>).
type Config struct {
	// PollInterval is how often the timer loop looks for due timers when
	// nothing woke it (a step in this process that set a timer due sooner
	// wakes it).
	PollInterval time.Duration `koanf:"poll_interval"`
	// Workers is the number of timer workers per replica (Postgres; SQLite
	// uses one).
	Workers int `koanf:"workers"`
	// MaxAttempts is how many times a timer or compensation step runs
	// before the saga is marked stuck (and waits for Runtime.Retry or the
	// dashboard's retry).
	MaxAttempts int `koanf:"max_attempts"`
	// BackoffInitial is the delay before a failed timer or compensation
	// step runs again; it doubles each attempt, up to BackoffMax.
	BackoffInitial time.Duration `koanf:"backoff_initial"`
	// BackoffMax caps that delay.
	BackoffMax time.Duration `koanf:"backoff_max"`
	// StuckAfter is how long an open saga may go without a step before the
	// dashboard lists it as stuck.
	StuckAfter time.Duration `koanf:"stuck_after"`
	// StepTimeout bounds a timer or compensation step (event steps are
	// bounded by MARTY_EVENTS_HANDLER_TIMEOUT); a step past it is rolled
	// back and counts as a failed attempt.
	StepTimeout time.Duration `koanf:"step_timeout"`
	// Retention keeps ended sagas (completed, compensated, aborted) and
	// their history this long after their last step; 0 keeps them forever.
	Retention time.Duration `koanf:"retention"`
}

// DefaultConfig returns the defaults: poll every second, 2 workers, 5
// attempts from 1s to 1m, 30s per timer step, stuck after an hour without a step, ended sagas
// kept 7 days.
func DefaultConfig() Config {
	return Config{
		PollInterval: time.Second, Workers: 2, MaxAttempts: 5,
		BackoffInitial: time.Second, BackoffMax: time.Minute, StuckAfter: time.Hour,
		Retention: 7 * 24 * time.Hour, StepTimeout: 30 * time.Second,
	}
}

// Validate checks the values; errors name the MARTY_SAGA_* variable.
func (c Config) Validate() error {
	if c.Workers <= 0 {
		return fxcore.Invalid("workers", c.Workers, "a positive integer")
	}
	if c.MaxAttempts <= 0 {
		return fxcore.Invalid("max_attempts", c.MaxAttempts, "a positive integer")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"poll_interval", c.PollInterval}, {"backoff_initial", c.BackoffInitial},
		{"backoff_max", c.BackoffMax}, {"stuck_after", c.StuckAfter}, {"step_timeout", c.StepTimeout},
	} {
		if d.v <= 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a positive duration")
		}
	}
	if c.Retention < 0 {
		return fxcore.Invalid("retention", c.Retention.String(), "a duration >= 0 (0 keeps ended sagas forever)")
	}
	if c.BackoffMax < c.BackoffInitial {
		return fxcore.Invalid("backoff_max", c.BackoffMax.String(), "at least backoff_initial ("+c.BackoffInitial.String()+")")
	}
	return nil
}
