package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
)

// LogNotifier logs alerts as they fire (warn) and resolve (info); reminders
// of alerts still firing are not logged again.
type LogNotifier struct {
	log *zap.Logger
}

// NewLogNotifier returns the log notifier.
func NewLogNotifier(log *zap.Logger) *LogNotifier { return &LogNotifier{log: log} }

// Name implements Notifier.
func (*LogNotifier) Name() string { return "log" }

// Notify implements Notifier.
func (n *LogNotifier) Notify(_ context.Context, alerts []Alert) error {
	for _, a := range alerts {
		if a.Resend {
			continue
		}
		fields := []zap.Field{zap.String("alert", a.Rule), zap.String("state", string(a.State)),
			zap.Float64("value", a.Value), zap.Any("labels", a.Labels)}
		if s := a.Annotations["summary"]; s != "" {
			fields = append(fields, zap.String("summary", s))
		}
		if a.State == Resolved {
			n.log.Info("alert resolved", append(fields, zap.Duration("lasted", a.ResolvedAt.Sub(a.FiredAt)))...)
		} else {
			n.log.Warn("alert firing", fields...)
		}
	}
	return nil
}

// AlertmanagerOptions configures NewAlertmanagerNotifier.
type AlertmanagerOptions struct {
	// Timeout bounds one POST (default 5s).
	Timeout time.Duration
	// Retries is how many times a failed POST is tried again (default 0).
	Retries int
	// Backoff is the first wait between tries, doubling each time up to 30s
	// (default 500ms).
	Backoff time.Duration
	// ValidFor is how long Alertmanager keeps a firing alert without hearing
	// of it again (its endsAt) when the alert has no ValidUntil. Default 4m.
	ValidFor time.Duration
	// GeneratorURL links each alert back to its source (optional).
	GeneratorURL string
	// Client makes the requests (default a new http.Client).
	Client *http.Client
}

// AlertmanagerNotifier posts alerts to Alertmanager's /api/v2/alerts in its
// own format (labels, annotations, startsAt, endsAt), retrying failures with
// exponential backoff. Client errors (4xx but 429) are not retried.
type AlertmanagerNotifier struct {
	endpoint string
	redacted string
	opts     AlertmanagerOptions
}

// NewAlertmanagerNotifier returns a notifier for the Alertmanager at base
// (e.g. http://alertmanager:9093).
func NewAlertmanagerNotifier(base string, opts AlertmanagerOptions) (*AlertmanagerNotifier, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("fxmonitor: Alertmanager URL %q: want an http(s) URL such as http://alertmanager:9093", redactURL(base))
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/api/v2/alerts"
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.ValidFor <= 0 {
		opts.ValidFor = 4 * time.Minute
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	return &AlertmanagerNotifier{endpoint: u.String(), redacted: u.Redacted(), opts: opts}, nil
}

// Name implements Notifier.
func (*AlertmanagerNotifier) Name() string { return "alertmanager" }

// postableAlert is Alertmanager's models.PostableAlert on the wire.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     string            `json:"startsAt,omitempty"`
	EndsAt       string            `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

const amTime = "2006-01-02T15:04:05.000Z07:00"

// Payload returns the JSON body posted for alerts: firing alerts end at
// their ValidUntil (or ValidFor after now) unless sent again, resolved
// alerts end when they resolved.
func (n *AlertmanagerNotifier) Payload(alerts []Alert, now time.Time) ([]byte, error) {
	out := make([]postableAlert, 0, len(alerts))
	for _, a := range alerts {
		if a.State != Firing && a.State != Resolved {
			continue
		}
		starts := a.FiredAt
		if starts.IsZero() {
			starts = a.ActiveAt
		}
		ends := a.ValidUntil
		if ends.IsZero() {
			ends = now.Add(n.opts.ValidFor)
		}
		if a.State == Resolved {
			ends = a.ResolvedAt
		}
		out = append(out, postableAlert{Labels: a.Labels, Annotations: a.Annotations,
			StartsAt: starts.UTC().Format(amTime), EndsAt: ends.UTC().Format(amTime), GeneratorURL: n.opts.GeneratorURL})
	}
	return json.Marshal(out)
}

// Notify implements Notifier: one POST, retried with backoff.
func (n *AlertmanagerNotifier) Notify(ctx context.Context, alerts []Alert) error {
	now := time.Now()
	body, err := n.Payload(alerts, now)
	if err != nil {
		return fmt.Errorf("fxmonitor: encode alerts: %w", err)
	}
	wait := n.opts.Backoff
	for attempt := 0; ; attempt++ {
		err = n.post(ctx, body)
		var perm *permanentError
		if err == nil || errors.As(err, &perm) || attempt >= n.opts.Retries {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fxmonitor: post alerts to %s: %w (then: %w)", n.redacted, err, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 30*time.Second)
	}
	if err != nil {
		return fmt.Errorf("fxmonitor: post alerts to %s: %w", n.redacted, err)
	}
	return nil
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func (n *AlertmanagerNotifier) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.endpoint, bytes.NewReader(body))
	if err != nil {
		return &permanentError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is named once, redacted, by Notify
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	err = fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	if resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests {
		return &permanentError{err}
	}
	return err
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
