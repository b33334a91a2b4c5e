package fxcore

import (
	"time"
)

// Config is the top-level configuration: MARTY_ENV, MARTY_START_TIMEOUT,
// MARTY_STOP_TIMEOUT (or the top-level scalar keys of the config file).
type Config struct {
	// Env is the deployment environment, e.g. development, staging, production.
	Env string `koanf:"env"`
	// StartTimeout bounds the whole start of the app.
	StartTimeout time.Duration `koanf:"start_timeout"`
	// StopTimeout bounds the whole graceful stop of the app.
	StopTimeout time.Duration `koanf:"stop_timeout"`
}

// DefaultConfig returns the defaults: development, 15s to start, 30s to stop.
func DefaultConfig() Config {
	return Config{Env: "development", StartTimeout: 15 * time.Second, StopTimeout: 30 * time.Second}
}

// Validate checks the values.
func (c Config) Validate() error {
	if c.Env == "" {
		return Invalid("env", c.Env, "a non-empty environment name such as development or production")
	}
	if c.StartTimeout <= 0 {
		return Invalid("start_timeout", c.StartTimeout.String(), "a positive duration")
	}
	if c.StopTimeout <= 0 {
		return Invalid("stop_timeout", c.StopTimeout.String(), "a positive duration")
	}
	return nil
}

// ServiceConfig is the service section: MARTY_SERVICE_NAME, MARTY_SERVICE_VERSION.
type ServiceConfig struct {
	// Name is the service's name in logs, spans and metrics; without it,
	// OTEL_SERVICE_NAME, then the binary's name.
	Name string `koanf:"name"`
	// Version is the service's version; without it, the module version the
	// binary was built from.
	Version string `koanf:"version"`
}

// Validate checks the values.
func (c ServiceConfig) Validate() error { return nil }

// LogConfig is the log section: MARTY_LOG_LEVEL, MARTY_LOG_FORMAT.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `koanf:"level"`
	// Format is json or console; "" picks console in development, json elsewhere.
	Format string `koanf:"format"`
}

// DefaultLogConfig returns level info and the format chosen by environment.
func DefaultLogConfig() LogConfig { return LogConfig{Level: "info"} }

// Validate checks the values.
func (c LogConfig) Validate() error {
	if err := OneOf("level", c.Level, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if c.Format != "" {
		return OneOf("format", c.Format, "json", "console")
	}
	return nil
}
