package health

import (
	"context"
	"fmt"
	"time"
)

// Kind says which probes a check feeds; a check may feed several.
type Kind uint8

// The probe kinds.
const (
	Startup Kind = 1 << iota
	Liveness
	Readiness
)

// Check is a health check.
type Check struct {
	// Name is unique in the app and labels the check's metrics.
	Name string
	// Kinds is the set of probes the check feeds (Startup|Readiness...).
	Kinds Kind
	// Critical failures turn the probe 503; others report degraded with 200.
	Critical bool
	// Timeout fails a check that hangs (default 2s).
	Timeout time.Duration
	// Interval runs the check in the background; 0 runs it on request.
	Interval time.Duration
	// FailureThreshold is how many consecutive failures flip it to failing (default 1).
	FailureThreshold int
	// Func returns nil when healthy.
	Func func(ctx context.Context) error
}

// Validate reports a check that misses its Name, Kinds or Func, or has
// unknown Kinds or negative durations.
func (c Check) Validate() error {
	switch {
	case c.Name == "" || c.Func == nil || c.Kinds == 0:
		return fmt.Errorf("check %q needs a Name, Kinds and a Func", c.Name)
	case c.Kinds&^(Startup|Liveness|Readiness) != 0:
		return fmt.Errorf("check %q: unknown kinds %d", c.Name, c.Kinds)
	case c.Timeout < 0 || c.Interval < 0 || c.FailureThreshold < 0:
		return fmt.Errorf("check %q: negative Timeout, Interval or FailureThreshold", c.Name)
	}
	return nil
}

// kinds lists the probe kinds in index order.
var kinds = [...]Kind{Startup, Liveness, Readiness}

// String returns "startup", "liveness", "readiness", or the set joined by "|".
func (k Kind) String() string {
	var out string
	for i, one := range kinds {
		if k&one != 0 {
			if out != "" {
				out += "|"
			}
			out += kindNames[i]
		}
	}
	if out == "" {
		return fmt.Sprintf("Kind(%d)", uint8(k))
	}
	return out
}

var kindNames = [...]string{"startup", "liveness", "readiness"}

// index returns the position of a single kind in kinds, or -1.
func (k Kind) index() int {
	switch k {
	case Startup:
		return 0
	case Liveness:
		return 1
	case Readiness:
		return 2
	}
	return -1
}

// Status is a check's status.
type Status uint8

// The check statuses. A check is Unknown until it first passes or reaches
// its FailureThreshold.
const (
	StatusUnknown Status = iota
	StatusPassing
	StatusFailing
)

// String returns "unknown", "passing" or "failing".
func (s Status) String() string {
	switch s {
	case StatusPassing:
		return "passing"
	case StatusFailing:
		return "failing"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Status) UnmarshalText(b []byte) error {
	switch string(b) {
	case "passing":
		*s = StatusPassing
	case "failing":
		*s = StatusFailing
	case "unknown":
		*s = StatusUnknown
	default:
		return fmt.Errorf("fxmonitor: unknown check status %q", b)
	}
	return nil
}

// Result is a check's last known result.
type Result struct {
	Name                string        `json:"name"`
	Kinds               string        `json:"kinds"`
	Critical            bool          `json:"critical"`
	Status              Status        `json:"status"`
	Error               string        `json:"error,omitempty"`
	LastError           string        `json:"last_error,omitempty"`
	LastErrorAt         *time.Time    `json:"last_error_at,omitempty"`
	Duration            time.Duration `json:"-"`
	DurationSeconds     float64       `json:"duration_seconds"`
	LastRun             *time.Time    `json:"last_run,omitempty"`
	Since               *time.Time    `json:"since,omitempty"`
	ConsecutiveFailures int           `json:"consecutive_failures"`
	Interval            string        `json:"interval,omitempty"`
}

func (s *checkState) result() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := Result{
		Name: s.Name, Kinds: s.Kinds.String(), Critical: s.Critical, Status: s.status,
		Duration: s.dur, DurationSeconds: s.dur.Seconds(), ConsecutiveFailures: s.fails,
	}
	if s.background {
		r.Interval = s.Interval.String()
	}
	if s.err != nil {
		r.Error = s.err.Error()
	}
	if s.lastErr != nil {
		r.LastError = s.lastErr.Error()
		t := s.lastErrAt
		r.LastErrorAt = &t
	}
	if !s.lastRun.IsZero() {
		t := s.lastRun
		r.LastRun = &t
	}
	if !s.since.IsZero() {
		t := s.since
		r.Since = &t
	}
	return r
}
