package fxmonitor

import (
	"context"
	"encoding/json"
	"strconv"
	"time"
)

// DashboardState is the document of /dashboard/api/state and of each
// server-sent event: everything the page draws.
type DashboardState struct {
	Service       ServiceStatus      `json:"service"`
	StartedAt     time.Time          `json:"started_at"`
	UptimeSeconds float64            `json:"uptime_seconds"`
	Now           time.Time          `json:"now"`
	Interval      float64            `json:"interval_seconds"`
	Window        float64            `json:"window_seconds"`
	Probes        map[string]Verdict `json:"probes"`
	// Checks are nil when the dashboard has no Health.
	Checks   []DashboardCheck `json:"checks"`
	Breakers []BreakerStatus  `json:"breakers"`
	// Alerts are pending, firing and recently resolved alerts.
	Alerts []Alert `json:"alerts"`
	// Rules is the number of alert rules (-1 without Alerts).
	Rules int `json:"rules"`
	// Times are the samples' times (Unix seconds), the charts' x axis.
	Times []float64  `json:"times"`
	HTTP  REDPanel   `json:"http"`
	GRPC  REDPanel   `json:"grpc"`
	Event EventPanel `json:"events"`
	Graph bool       `json:"graph"`
}

// DashboardCheck is a check's result with its recent history (oldest first).
type DashboardCheck struct {
	CheckResult
	History []CheckStatus `json:"history"`
}

// REDPanel is the rate, errors and duration of HTTP routes or gRPC methods.
type REDPanel struct {
	// Present is false when the app has no such server (its metrics are
	// not in the registry).
	Present bool        `json:"present"`
	Series  []redSeries `json:"series"`
	// Idle names the routes or methods that had no traffic yet.
	Idle []string `json:"idle"`
}

// EventPanel is the event bus: outbox figures and dead letters.
type EventPanel struct {
	Present bool `json:"present"`
	Outbox  bool `json:"outbox"`
	// Pending and LagSeconds are the outbox gauges (null without the outbox).
	Pending    num `json:"pending"`
	LagSeconds num `json:"lag_seconds"`
	// Queued is the memory bus' queue depth (null without it).
	Queued num `json:"queued"`
	// Rates per second over the window.
	DeliveredPerSec num `json:"delivered_per_sec"`
	PublishedPerSec num `json:"published_per_sec"`
	HandledPerSec   num `json:"handled_per_sec"`
	FailedPerSec    num `json:"failed_per_sec"`
	DeadTotal       num `json:"dead_total"`
	// Points are chart columns, one per sample.
	Points struct {
		Pending   []num `json:"pending"`
		Delivered []num `json:"delivered"`
		Handled   []num `json:"handled"`
		Failed    []num `json:"failed"`
	} `json:"points"`
	// DeadLetters come from GET /events/dead; DeadLettersAvailable is
	// false when the app has no such route, DeadLettersError when it failed.
	DeadLettersAvailable bool              `json:"dead_letters_available"`
	DeadLetters          []json.RawMessage `json:"dead_letters"`
	DeadLettersError     string            `json:"dead_letters_error,omitempty"`
}

// State builds the dashboard's document from the cached checks, the ring
// buffer and the event bus' dead letters.
func (d *Dashboard) State(ctx context.Context) DashboardState {
	now := time.Now()
	st := DashboardState{
		Service: ServiceStatus{Name: d.opts.Info.Name, Version: d.opts.Info.Version,
			Environment: d.opts.Info.Environment, InstanceID: d.opts.Info.InstanceID},
		StartedAt:     d.started,
		UptimeSeconds: now.Sub(d.started).Seconds(),
		Now:           now,
		Interval:      d.opts.Interval.Seconds(),
		Window:        d.opts.Window.Seconds(),
		Probes:        map[string]Verdict{},
		Breakers:      []BreakerStatus{},
		Alerts:        []Alert{},
		Rules:         -1,
		Graph:         d.opts.Graph != "",
	}
	if d.opts.Health != nil {
		for i, k := range kinds {
			st.Probes[kindNames[i]] = d.opts.Health.verdict(k)
		}
	}
	if d.opts.Breakers != nil {
		st.Breakers = (&StatusPage{Breakers: d.opts.Breakers}).Statusz().Breakers
	}
	if d.opts.Alerts != nil {
		if act := d.opts.Alerts.Active(); act != nil {
			st.Alerts = act
		}
		st.Rules = len(d.opts.Alerts.rules)
	}

	d.mu.Lock()
	if d.opts.Health != nil {
		st.Checks = []DashboardCheck{}
		for _, r := range d.opts.Health.Results() {
			h := append([]CheckStatus{}, d.history[r.Name]...)
			if len(h) == 0 || h[len(h)-1] != r.Status {
				h = append(h, r.Status) // newer than the last sample
			}
			st.Checks = append(st.Checks, DashboardCheck{CheckResult: r, History: h})
		}
	}
	st.Times = d.ring.times()
	last := d.ring.last()
	fam := func(name string) bool { return last != nil && last.families[name] }
	st.HTTP.Series, st.HTTP.Idle = d.ring.red("http", d.smooth)
	st.HTTP.Present = len(st.HTTP.Series)+len(st.HTTP.Idle) > 0
	st.GRPC.Series, st.GRPC.Idle = d.ring.red("grpc", d.smooth)
	st.GRPC.Present = fam(grpcHandledMetric) || fam(grpcDurationMetric)
	ev := &st.Event
	ev.Outbox = fam(outboxPendingMetric)
	ev.Present = ev.Outbox || fam(eventsPublished) || fam(eventsHandled) || fam(eventsQueueDepth) || d.adminOK
	ev.Pending, ev.LagSeconds, ev.Queued, ev.DeadTotal = nan, nan, nan, nan
	if last != nil {
		if v, ok := last.values[outboxPendingMetric]; ok {
			ev.Pending = num(v)
		}
		if v, ok := last.values[outboxLagMetric]; ok {
			ev.LagSeconds = num(v)
		}
		if v, ok := last.values[eventsQueueDepth]; ok {
			ev.Queued = num(v)
		}
		if v, ok := last.values[eventsDead]; ok {
			ev.DeadTotal = num(v)
		}
	}
	ev.DeliveredPerSec, ev.Points.Delivered = d.ring.rateOf(outboxDelivered, d.smooth)
	ev.PublishedPerSec, _ = d.ring.rateOf(eventsPublished, d.smooth)
	ev.HandledPerSec, ev.Points.Handled = d.ring.rateOf(eventsHandled, d.smooth)
	ev.FailedPerSec, ev.Points.Failed = d.ring.rateOf(eventsFailed, d.smooth)
	ev.Points.Pending = d.ring.gaugeOf(outboxPendingMetric)
	admin, adminOK := d.admin, d.adminOK
	d.mu.Unlock()

	ev.DeadLetters = []json.RawMessage{}
	ev.DeadLettersAvailable = adminOK
	if adminOK {
		rec := callAdmin(ctx, admin, "GET", "/events/dead?limit="+strconv.Itoa(deadLetterLimit))
		var body struct {
			DeadLetters []json.RawMessage `json:"dead_letters"`
			Error       string            `json:"error"`
		}
		switch err := json.Unmarshal(rec.body.Bytes(), &body); {
		case err != nil:
			ev.DeadLettersError = "read dead letters: " + err.Error()
		case rec.code != 200:
			ev.DeadLettersError = body.Error
		default:
			if body.DeadLetters != nil {
				ev.DeadLetters = body.DeadLetters
			}
		}
	}
	return st
}
