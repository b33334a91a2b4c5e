package fxtracing

import (
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Config tunes the batch span processor that feeds the exporter. It is the
// "tracing" section: MARTY_TRACING_<FIELD> or the tracing: section of the
// config file. A zero field means "the standard value": the matching
// OTEL_BSP_* variable when it is set, else the OpenTelemetry default.
//
// What to export, how to sample and how to propagate come from the standard
// OTEL_* variables, not from this struct (see the package doc).
type Config struct {
	// QueueSize is how many ended spans may wait for export; spans beyond it
	// are dropped rather than slowing requests (OTEL_BSP_MAX_QUEUE_SIZE, 2048).
	QueueSize int `koanf:"queue_size"`
	// BatchSize is the most spans sent in one export
	// (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, 512). It must not exceed QueueSize.
	BatchSize int `koanf:"batch_size"`
	// ScheduleDelay is the longest a span waits before its batch is sent
	// (OTEL_BSP_SCHEDULE_DELAY, 5s).
	ScheduleDelay time.Duration `koanf:"schedule_delay"`
	// ExportTimeout bounds one export call (OTEL_BSP_EXPORT_TIMEOUT, 30s).
	ExportTimeout time.Duration `koanf:"export_timeout"`
}

// DefaultConfig returns the zero Config: every value from OTEL_BSP_* or the
// OpenTelemetry defaults.
func DefaultConfig() Config { return Config{} }

// Validate checks the values.
func (c Config) Validate() error {
	if c.QueueSize < 0 {
		return fxcore.Invalid("queue_size", c.QueueSize, "a positive number of spans, or 0 for the default")
	}
	if c.BatchSize < 0 {
		return fxcore.Invalid("batch_size", c.BatchSize, "a positive number of spans, or 0 for the default")
	}
	if c.QueueSize > 0 && c.BatchSize > c.QueueSize {
		return fxcore.Invalid("batch_size", c.BatchSize, "at most queue_size")
	}
	if c.ScheduleDelay < 0 {
		return fxcore.Invalid("schedule_delay", c.ScheduleDelay.String(), "a positive duration, or 0 for the default")
	}
	if c.ExportTimeout < 0 {
		return fxcore.Invalid("export_timeout", c.ExportTimeout.String(), "a positive duration, or 0 for the default")
	}
	return nil
}
