package fxmonitor

import (
	"net/url"
	"time"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

// Config is the "monitor" section: MARTY_MONITOR_<FIELD>.
type Config struct {
	// CheckTimeout fails a check that has no Timeout of its own and hangs
	// (MARTY_MONITOR_CHECK_TIMEOUT, default 2s).
	CheckTimeout time.Duration `koanf:"check_timeout"`
	// CheckTTL is how long the result of an on-request check (one without an
	// Interval) is served from cache (MARTY_MONITOR_CHECK_TTL, default 1s).
	CheckTTL time.Duration `koanf:"check_ttl"`
	// WatchInterval is how often on-request checks are refreshed in the
	// background while a module listens to Health.OnChange (fxgrpc's health
	// service does), so it hears of changes without probe traffic
	// (MARTY_MONITOR_WATCH_INTERVAL, default 5s).
	WatchInterval time.Duration `koanf:"watch_interval"`
	// Disk is the built-in disk usage check (MARTY_MONITOR_DISK_*).
	Disk DiskConfig `koanf:"disk"`
	// Memory is the built-in memory usage check (MARTY_MONITOR_MEMORY_*).
	Memory MemoryConfig `koanf:"memory"`
	// Checks overrides settings of health checks by name
	// (MARTY_MONITOR_CHECKS_<NAME>_<FIELD>; the name matched like a breaker
	// name), e.g. MARTY_MONITOR_CHECKS_NATS_CRITICAL=true. A name that
	// matches no check fails the start.
	Checks map[string]CheckSettings `koanf:"checks"`
	// CheckAlerts adds the built-in alert rules on failing health checks,
	// MartyHealthCheckFailing (critical checks) and MartyHealthCheckDegraded
	// (non-critical ones), when the app has checks
	// (MARTY_MONITOR_CHECK_ALERTS, default true).
	CheckAlerts bool `koanf:"check_alerts"`
	// CheckAlertFor is how long a check must keep failing before its alert
	// fires (MARTY_MONITOR_CHECK_ALERT_FOR, default 1m).
	CheckAlertFor time.Duration `koanf:"check_alert_for"`
	// System samples CPU, memory and disk into marty_system_* gauges
	// (MARTY_MONITOR_SYSTEM_*).
	System SystemConfig `koanf:"system"`
	// AlertInterval is how often alert rules are evaluated
	// (MARTY_MONITOR_ALERT_INTERVAL, default 15s).
	AlertInterval time.Duration `koanf:"alert_interval"`
	// AlertResend is how often a firing alert is sent again to notifiers
	// that need it (Alertmanager) (MARTY_MONITOR_ALERT_RESEND, default 1m).
	AlertResend time.Duration `koanf:"alert_resend"`
	// AlertmanagerURL, when set, adds the Alertmanager notifier posting to
	// <url>/api/v2/alerts (MARTY_MONITOR_ALERTMANAGER_URL).
	AlertmanagerURL string `koanf:"alertmanager_url"`
	// AlertmanagerTimeout bounds one POST (MARTY_MONITOR_ALERTMANAGER_TIMEOUT, default 5s).
	AlertmanagerTimeout time.Duration `koanf:"alertmanager_timeout"`
	// AlertmanagerRetries is how many times a failed POST is retried with
	// exponential backoff (MARTY_MONITOR_ALERTMANAGER_RETRIES, default 3).
	AlertmanagerRetries int `koanf:"alertmanager_retries"`
	// LogAlerts keeps the log notifier (MARTY_MONITOR_LOG_ALERTS, default true).
	LogAlerts bool `koanf:"log_alerts"`
	// Breaker holds the defaults of every circuit breaker
	// (MARTY_MONITOR_BREAKER_<FIELD>).
	Breaker breaker.Settings `koanf:"breaker"`
	// Breakers overrides settings per breaker name
	// (MARTY_MONITOR_BREAKERS_<NAME>_<FIELD>); unset fields take Breaker's.
	Breakers map[string]breaker.Settings `koanf:"breakers"`
	// BreakerCheck adds a non-critical readiness check that fails while a
	// breaker is open (MARTY_MONITOR_BREAKER_CHECK, default true).
	BreakerCheck bool `koanf:"breaker_check"`
	// Dashboard serves the operations dashboard at /dashboard on the admin
	// server (MARTY_MONITOR_DASHBOARD, default true).
	Dashboard bool `koanf:"dashboard"`
	// DashboardInterval is how often the dashboard samples the registry and
	// pushes its state to open pages (MARTY_MONITOR_DASHBOARD_INTERVAL, default 2s).
	DashboardInterval time.Duration `koanf:"dashboard_interval"`
	// DashboardWindow is how much history the dashboard keeps for its charts
	// (MARTY_MONITOR_DASHBOARD_WINDOW, default 5m).
	DashboardWindow time.Duration `koanf:"dashboard_window"`
}

// DiskConfig configures the built-in disk usage check.
type DiskConfig struct {
	// Enabled turns the check on (default true).
	Enabled bool `koanf:"enabled"`
	// Path is the file system to watch (default ".").
	Path string `koanf:"path"`
	// MaxPercent is the used share, in percent, above which it fails (default 90).
	MaxPercent float64 `koanf:"max_percent"`
}

// MemoryConfig configures the built-in memory usage check.
type MemoryConfig struct {
	// Enabled turns the check on (default true).
	Enabled bool `koanf:"enabled"`
	// MaxPercent is the used share of system memory, in percent, above
	// which it fails (default 90).
	MaxPercent float64 `koanf:"max_percent"`
}

// CheckSettings overrides a health check's settings; unset fields keep
// what the check's module chose.
type CheckSettings struct {
	// Critical, when set, makes the check critical (its failure fails its
	// probes with 503) or not (its failure reports degraded with 200).
	Critical *bool `koanf:"critical"`
}

// SystemConfig configures the gopsutil system metrics.
type SystemConfig struct {
	// Enabled turns the marty_system_* gauges on (default true).
	Enabled bool `koanf:"enabled"`
	// Interval is the sampling period (default 15s).
	Interval time.Duration `koanf:"interval"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		CheckTimeout:        2 * time.Second,
		CheckTTL:            time.Second,
		WatchInterval:       5 * time.Second,
		Disk:                DiskConfig{Enabled: true, Path: ".", MaxPercent: 90},
		Memory:              MemoryConfig{Enabled: true, MaxPercent: 90},
		System:              SystemConfig{Enabled: true, Interval: 15 * time.Second},
		AlertInterval:       15 * time.Second,
		AlertResend:         time.Minute,
		AlertmanagerTimeout: 5 * time.Second,
		AlertmanagerRetries: 3,
		LogAlerts:           true,
		CheckAlerts:         true,
		CheckAlertFor:       time.Minute,
		Breaker:             breaker.DefaultSettings(),
		BreakerCheck:        true,
		Dashboard:           true,
		DashboardInterval:   2 * time.Second,
		DashboardWindow:     5 * time.Minute,
	}
}

// Validate checks the values.
func (c Config) Validate() error {
	positive := []struct {
		key string
		v   time.Duration
	}{
		{"check_timeout", c.CheckTimeout}, {"check_ttl", c.CheckTTL}, {"watch_interval", c.WatchInterval},
		{"system.interval", c.System.Interval},
		{"alert_interval", c.AlertInterval}, {"alert_resend", c.AlertResend},
		{"alertmanager_timeout", c.AlertmanagerTimeout},
		{"dashboard_interval", c.DashboardInterval}, {"dashboard_window", c.DashboardWindow},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fxcore.Invalid(p.key, p.v.String(), "a positive duration")
		}
	}
	if c.CheckAlertFor < 0 {
		return fxcore.Invalid("check_alert_for", c.CheckAlertFor.String(), "a duration >= 0")
	}
	if c.Disk.Enabled && c.Disk.Path == "" {
		return fxcore.Invalid("disk.path", c.Disk.Path, "a path on the file system to watch")
	}
	if c.Disk.MaxPercent <= 0 || c.Disk.MaxPercent > 100 {
		return fxcore.Invalid("disk.max_percent", c.Disk.MaxPercent, "a percentage in (0, 100]")
	}
	if c.Memory.MaxPercent <= 0 || c.Memory.MaxPercent > 100 {
		return fxcore.Invalid("memory.max_percent", c.Memory.MaxPercent, "a percentage in (0, 100]")
	}
	if c.DashboardWindow < c.DashboardInterval {
		return fxcore.Invalid("dashboard_window", c.DashboardWindow.String(), "a duration of at least dashboard_interval ("+c.DashboardInterval.String()+")")
	}
	if c.AlertmanagerRetries < 0 {
		return fxcore.Invalid("alertmanager_retries", c.AlertmanagerRetries, "a non-negative integer")
	}
	if c.AlertmanagerURL != "" {
		u, err := url.Parse(c.AlertmanagerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fxcore.Invalid("alertmanager_url", c.AlertmanagerURL, "an http(s) URL such as http://alertmanager:9093")
		}
	}
	return c.breakers().Validate()
}

// criticalOverrides returns the Critical overrides of Checks, by check
// name, for health.Options.Critical.
func (c Config) criticalOverrides() map[string]bool {
	var out map[string]bool
	for name, s := range c.Checks {
		if s.Critical == nil {
			continue
		}
		if out == nil {
			out = map[string]bool{}
		}
		out[name] = *s.Critical
	}
	return out
}

// breakers returns the circuit breaker part of the config.
func (c Config) breakers() breaker.Config {
	return breaker.Config{Defaults: c.Breaker, Named: c.Breakers}
}
