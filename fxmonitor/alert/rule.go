package alert

import (
	"context"
	"fmt"
	"time"
)

// Op compares a rule's value with its threshold.
type Op string

// The comparison operators, as in PromQL.
const (
	OpGreater      Op = ">"
	OpGreaterEqual Op = ">="
	OpLess         Op = "<"
	OpLessEqual    Op = "<="
	OpEqual        Op = "=="
	OpNotEqual     Op = "!="
)

func (o Op) compare(v, threshold float64) bool {
	switch o {
	case OpGreater:
		return v > threshold
	case OpGreaterEqual:
		return v >= threshold
	case OpLess:
		return v < threshold
	case OpLessEqual:
		return v <= threshold
	case OpEqual:
		return v == threshold
	case OpNotEqual:
		return v != threshold
	}
	return false
}

func (o Op) valid() bool {
	switch o {
	case OpGreater, OpGreaterEqual, OpLess, OpLessEqual, OpEqual, OpNotEqual:
		return true
	}
	return false
}

// Rule is an alert on a metric of the app's registry, evaluated
// in-process with Prometheus' semantics: each series matching Metric and
// Labels whose value satisfies Op Threshold is pending, then firing once it
// has been so for For, and resolved when it no longer is. The same rule is
// exported as a Prometheus rule (RuleFile, /alerts/rules.yaml) as
// `Metric{Labels} Op Threshold`, or `rate(Metric{Labels}[Rate]) Op Threshold`.
type Rule struct {
	// Name is the alert name (the alertname label), e.g. "HighErrorRate".
	Name string
	// Metric is the series name: a gauge, counter or untyped metric, or a
	// histogram's or summary's <name>_count / <name>_sum.
	Metric string
	// Labels select series by equality; other labels are kept on the alert.
	Labels map[string]string
	// Rate, when > 0, compares the per-second rate of the counter over that
	// window instead of its value (PromQL's rate()).
	Rate time.Duration
	// Op compares the value with Threshold.
	Op Op
	// Threshold is the value Op compares with.
	Threshold float64
	// For is how long the condition must hold before the alert fires (0: at once).
	For time.Duration
	// Severity labels the alert (default "warning").
	Severity string
	// Summary is the summary annotation; like Prometheus, it may use
	// {{ $value }} and {{ $labels.name }}.
	Summary string
	// Description is the description annotation, templated like Summary.
	Description string
}

// Validate reports a rule without a valid Name, Metric or Op, with a
// negative For or Rate, an invalid label name, or a Summary or Description
// that is not a valid template.
func (r Rule) Validate() error {
	switch {
	case r.Name == "":
		return fmt.Errorf("alert rule on %q needs a Name", r.Metric)
	case !validMetricName(r.Name):
		return fmt.Errorf("alert rule %q: the name must match [a-zA-Z_:][a-zA-Z0-9_:]*", r.Name)
	case r.Metric == "" || !validMetricName(r.Metric):
		return fmt.Errorf("alert rule %q: invalid metric name %q", r.Name, r.Metric)
	case !r.Op.valid():
		return fmt.Errorf("alert rule %q: invalid Op %q, want one of > >= < <= == !=", r.Name, r.Op)
	case r.For < 0 || r.Rate < 0:
		return fmt.Errorf("alert rule %q: negative For or Rate", r.Name)
	}
	for k := range r.Labels {
		if !validLabelName(k) {
			return fmt.Errorf("alert rule %q: invalid label name %q", r.Name, k)
		}
	}
	if _, err := parseTemplate(r.Summary); err != nil {
		return fmt.Errorf("alert rule %q: summary: %w", r.Name, err)
	}
	if _, err := parseTemplate(r.Description); err != nil {
		return fmt.Errorf("alert rule %q: description: %w", r.Name, err)
	}
	return nil
}

func validMetricName(s string) bool {
	for i, r := range s {
		ok := r == '_' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return s != ""
}

func validLabelName(s string) bool {
	for i, r := range s {
		ok := r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return s != ""
}

// State is the state of an alert, as in Prometheus.
type State string

// The alert states.
const (
	Inactive State = "inactive"
	Pending  State = "pending"
	Firing   State = "firing"
	Resolved State = "resolved"
)

// Alert is one series of a rule in a non-inactive state.
type Alert struct {
	// Rule is the rule's Name.
	Rule string `json:"rule"`
	// Labels are alertname, severity, service and the series' labels.
	Labels map[string]string `json:"labels"`
	// Annotations are summary and description, templated.
	Annotations map[string]string `json:"annotations,omitempty"`
	// State is pending, firing or resolved.
	State State `json:"state"`
	// Value is the value (or rate) at the last evaluation.
	Value float64 `json:"value"`
	// ActiveAt is when the condition began to hold.
	ActiveAt time.Time `json:"active_at"`
	// FiredAt is when the alert began to fire (zero while pending).
	FiredAt time.Time `json:"fired_at,omitzero"`
	// ResolvedAt is when the condition stopped holding (zero unless resolved).
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// ValidUntil is when a firing alert should be taken as resolved unless
	// sent again: 4 × max(evaluation interval, resend interval) after the
	// evaluation, as Prometheus sets it (Alertmanager's endsAt).
	ValidUntil time.Time `json:"-"`
	// Resend is true when the alert was sent to notifiers before in this
	// state: a reminder for receivers that need one (Alertmanager).
	Resend bool `json:"-"`
}

// Notifier receives alerts that fire, resolve, or are still firing at the
// resend interval. Notify runs off the evaluation loop, one call at a time
// per notifier; a slow or failing notifier never blocks evaluation.
type Notifier interface {
	// Name names the notifier in logs and metrics.
	Name() string
	// Notify delivers alerts; ctx is cancelled when the app stops.
	Notify(ctx context.Context, alerts []Alert) error
}
