package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/health"
	"github.com/martyfx/martyfx/fxmonitor/internal/view"
	"go.uber.org/zap"
)

// state is the document of /dashboard/api/state and of each server-sent
// event: everything the page draws.
type state struct {
	Service       view.Service              `json:"service"`
	StartedAt     time.Time                 `json:"started_at"`
	UptimeSeconds float64                   `json:"uptime_seconds"`
	Now           time.Time                 `json:"now"`
	Interval      float64                   `json:"interval_seconds"`
	Window        float64                   `json:"window_seconds"`
	Probes        map[string]health.Verdict `json:"probes"`
	// Checks are nil when the dashboard has no Health.
	Checks   []checkState   `json:"checks"`
	Breakers []view.Breaker `json:"breakers"`
	// Alerts are pending, firing and recently resolved alerts.
	Alerts []alert.Alert `json:"alerts"`
	// Rules is the number of alert rules (-1 without Alerts).
	Rules int `json:"rules"`
	// Times are the samples' times (Unix seconds), the charts' x axis.
	Times  []float64    `json:"times"`
	HTTP   redPanel     `json:"http"`
	GRPC   redPanel     `json:"grpc"`
	Panels []panelState `json:"panels"`
	Graph  bool         `json:"graph"`
}

// checkState is a check's result with its recent history (oldest first).
type checkState struct {
	health.Result
	History []health.Status `json:"history"`
}

// redPanel is the rate, errors and duration of HTTP routes or gRPC methods.
type redPanel struct {
	// Present is false when the app has no such server (its metrics are
	// not in the registry).
	Present bool        `json:"present"`
	Series  []redSeries `json:"series"`
	// Idle names the routes or methods that had no traffic yet.
	Idle []string `json:"idle"`
}

// panelState is a Panel as the page draws it.
type panelState struct {
	Name     string      `json:"name"`
	Title    string      `json:"title"`
	Subtitle string      `json:"subtitle,omitempty"`
	Stats    []statState `json:"stats"`
	Table    *tableState `json:"table,omitempty"`
}

// statState is a Stat's value and, when charted, its points (one per sample).
type statState struct {
	Label  string   `json:"label"`
	Kind   StatKind `json:"kind"`
	Value  num      `json:"value"`
	Chart  bool     `json:"chart,omitempty"`
	Color  string   `json:"color,omitempty"`
	Points []num    `json:"points,omitempty"`
}

// tableState is a Table with its rows.
type tableState struct {
	Title   string   `json:"title"`
	Columns []Column `json:"columns"`
	Empty   string   `json:"empty,omitempty"`
	Key     string   `json:"key"`
	Action  *Action  `json:"action,omitempty"`
	tableRows
}

// tableRows are a table's rows as read, or the error reading them.
type tableRows struct {
	Rows  json.RawMessage `json:"rows"`
	Error string          `json:"error,omitempty"`
}

// state builds the dashboard's document from the cached checks, the ring
// buffer and the panels' rows (read again when fresh, else at most once
// per sample).
func (d *Dashboard) state(ctx context.Context, fresh bool) state {
	now := time.Now()
	st := state{
		Service:       view.ServiceOf(d.opts.Info),
		StartedAt:     d.started,
		UptimeSeconds: now.Sub(d.started).Seconds(),
		Now:           now,
		Interval:      d.opts.Interval.Seconds(),
		Window:        d.opts.Window.Seconds(),
		Probes:        map[string]health.Verdict{},
		Breakers:      view.Breakers(d.opts.Breakers),
		Alerts:        []alert.Alert{},
		Rules:         -1,
		Graph:         d.opts.Graph != "",
	}
	if d.opts.Health != nil {
		st.Probes = d.opts.Health.Verdicts()
	}
	if d.opts.Alerts != nil {
		if act := d.opts.Alerts.Active(); act != nil {
			st.Alerts = act
		}
		st.Rules = len(d.opts.Alerts.Rules())
	}
	rows := d.panelRows(ctx, fresh)

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opts.Health != nil {
		st.Checks = []checkState{}
		for _, r := range d.opts.Health.Results() {
			h := append([]health.Status{}, d.history[r.Name]...)
			if len(h) == 0 || h[len(h)-1] != r.Status {
				h = append(h, r.Status) // newer than the last sample
			}
			st.Checks = append(st.Checks, checkState{Result: r, History: h})
		}
	}
	st.Times = d.ring.times()
	last := d.ring.last()
	st.HTTP.Series, st.HTTP.Idle = d.ring.red("http", d.smooth)
	st.HTTP.Present = len(st.HTTP.Series)+len(st.HTTP.Idle) > 0
	st.GRPC.Series, st.GRPC.Idle = d.ring.red("grpc", d.smooth)
	st.GRPC.Present = last != nil && (last.families[grpcHandledMetric] || last.families[grpcDurationMetric])
	st.Panels = make([]panelState, len(d.opts.Panels))
	for i, p := range d.opts.Panels {
		st.Panels[i] = d.panel(p, rows[i])
	}
	return st
}

// panel draws p from the ring (the caller holds d.mu).
func (d *Dashboard) panel(p Panel, rows tableRows) panelState {
	ps := panelState{Name: p.Name, Title: p.Title, Subtitle: p.Subtitle, Stats: make([]statState, len(p.Stats))}
	last := d.ring.last()
	for i, s := range p.Stats {
		ss := statState{Label: s.Label, Kind: s.Kind, Value: nan, Chart: s.Chart, Color: s.Color}
		var points []num
		if s.Kind == Rate {
			ss.Value, points = d.ring.rateOf(s.Metric, d.smooth)
		} else {
			if v, ok := last.valueOf(s.Metric); ok {
				ss.Value = num(v)
			}
			points = d.ring.gaugeOf(s.Metric)
		}
		if s.Chart {
			ss.Points = points
		}
		ps.Stats[i] = ss
	}
	if t := p.Table; t != nil {
		key := t.Key
		if key == "" {
			key = "id"
		}
		var act *Action
		if t.Action != nil {
			a := *t.Action
			if a.Method == "" {
				a.Method = "POST"
			}
			act = &a
		}
		ps.Table = &tableState{Title: t.Title, Columns: t.Columns, Empty: t.Empty, Key: key, Action: act, tableRows: rows}
	}
	return ps
}

// panelRows reads every panel's table rows: again when fresh, else at most
// once per sample, shared by every open stream.
func (d *Dashboard) panelRows(ctx context.Context, fresh bool) []tableRows {
	d.rowsMu.Lock()
	defer d.rowsMu.Unlock()
	d.mu.Lock()
	gen := d.gen
	d.mu.Unlock()
	if !fresh && d.rows != nil && d.rowsGen == gen {
		return d.rows
	}
	out := make([]tableRows, len(d.opts.Panels))
	for i, p := range d.opts.Panels {
		if p.Table != nil {
			out[i] = d.readRows(ctx, p.Table)
		}
	}
	d.rows, d.rowsGen = out, gen
	return out
}

var emptyRows = json.RawMessage("[]")

func (d *Dashboard) readRows(ctx context.Context, t *Table) (out tableRows) {
	out.Rows = emptyRows
	ctx, cancel := context.WithTimeout(ctx, max(d.opts.Interval, 2*time.Second))
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			out = tableRows{Rows: emptyRows, Error: "reading the rows panicked"}
			d.log.Error("dashboard: a panel's rows panicked", zap.Any("panic", r))
		}
	}()
	v, err := t.Rows(ctx)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	b, err := json.Marshal(v)
	switch {
	case err != nil:
		out.Error = "encode rows: " + err.Error()
	case bytes.Equal(b, []byte("null")):
	case len(b) == 0 || b[0] != '[':
		out.Error = "rows must encode as a JSON array"
	default:
		out.Rows = b
	}
	return out
}
