package breaker

import (
	"sort"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Settings configures a circuit breaker. Zero fields take the defaults
// (DefaultSettings). The koanf tags are those of fxmonitor.Config's
// MARTY_MONITOR_BREAKER_<FIELD> and MARTY_MONITOR_BREAKERS_<NAME>_<FIELD>.
type Settings struct {
	// MaxRequests is how many trial calls pass while half-open (default 1).
	MaxRequests uint32 `koanf:"max_requests"`
	// Interval clears the failure counts while closed (default 60s; 0 keeps
	// the default, a negative value never clears).
	Interval time.Duration `koanf:"interval"`
	// Timeout is how long the breaker stays open before half-opening (default 30s).
	Timeout time.Duration `koanf:"timeout"`
	// ConsecutiveFailures trips the breaker (default 5).
	ConsecutiveFailures uint32 `koanf:"consecutive_failures"`
	// FailureRatio, when > 0, also trips it once at least MinRequests calls
	// were made in the interval and this share of them failed (0..1).
	FailureRatio float64 `koanf:"failure_ratio"`
	// MinRequests is the sample size FailureRatio needs (default 10).
	MinRequests uint32 `koanf:"min_requests"`
}

// DefaultSettings returns the defaults of every breaker.
func DefaultSettings() Settings {
	return Settings{MaxRequests: 1, Interval: 60 * time.Second, Timeout: 30 * time.Second,
		ConsecutiveFailures: 5, MinRequests: 10}
}

// Config is the breakers' configuration: fxmonitor.Config's Breaker and
// Breakers fields.
type Config struct {
	// Defaults apply to every breaker (zero fields take DefaultSettings).
	Defaults Settings
	// Named overrides settings per breaker name (matched case-insensitively,
	// with "-" and "." read as "_"); unset fields take Defaults.
	Named map[string]Settings
}

// Validate checks the values. Its errors name the keys of the monitor
// config section ("breaker.timeout", "breakers.<name>.failure_ratio"), so
// the Fx path reports the environment variable.
func (c Config) Validate() error {
	if err := c.Defaults.validate("breaker."); err != nil {
		return err
	}
	names := make([]string, 0, len(c.Named))
	for name := range c.Named {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := c.Named[name].validate("breakers." + name + "."); err != nil {
			return err
		}
	}
	return nil
}

func (s Settings) validate(prefix string) error {
	if s.Timeout < 0 {
		return fxcore.Invalid(prefix+"timeout", s.Timeout.String(), "a positive duration")
	}
	if s.FailureRatio < 0 || s.FailureRatio > 1 {
		return fxcore.Invalid(prefix+"failure_ratio", s.FailureRatio, "a ratio in [0, 1]")
	}
	return nil
}

func merge(base, over Settings) Settings {
	if over.MaxRequests != 0 {
		base.MaxRequests = over.MaxRequests
	}
	if over.Interval != 0 {
		base.Interval = over.Interval
	}
	if over.Timeout != 0 {
		base.Timeout = over.Timeout
	}
	if over.ConsecutiveFailures != 0 {
		base.ConsecutiveFailures = over.ConsecutiveFailures
	}
	if over.FailureRatio != 0 {
		base.FailureRatio = over.FailureRatio
	}
	if over.MinRequests != 0 {
		base.MinRequests = over.MinRequests
	}
	return base
}
