package fxevents

import (
	"context"
	"time"

	"github.com/martyfx/martyfx/fxmonitor/dashboard"
)

// panelDeadLetters is how many dead letters the dashboard panel lists.
const panelDeadLetters = 50

// panelRow is a dead letter as the dashboard panel lists it: no payload or
// metadata (GET /events/dead has them).
type panelRow struct {
	ID       string    `json:"id"`
	Handler  string    `json:"handler"`
	EventID  string    `json:"event_id"`
	Type     string    `json:"type"`
	Error    string    `json:"error"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`
}

// newPanel is the event bus' panel on fxmonitor's dashboard: the outbox's
// pending rows, lag and deliveries (or the memory bus' queues), events
// published, handled and failed per second, and the dead letters, each
// re-driven through POST /events/dead/{id}/retry. fxmonitor knows none of
// these names: this panel tells it.
func newPanel(cfg Config, store DeadLetterStore) dashboard.Panel {
	p := dashboard.Panel{Name: "events", Title: "Event bus"}
	if cfg.Bus == BusOutbox {
		p.Subtitle = "transactional outbox"
		p.Stats = append(p.Stats,
			dashboard.Stat{Label: "pending", Metric: "marty_outbox_pending", Kind: dashboard.Gauge, Chart: true, Color: "#7c3aed"},
			dashboard.Stat{Label: "lag", Metric: "marty_outbox_lag_seconds", Kind: dashboard.Seconds},
			dashboard.Stat{Label: "delivered/s", Metric: "marty_outbox_delivered_total", Kind: dashboard.Rate, Chart: true, Color: "#2563eb"})
	} else {
		p.Subtitle = "in-memory bus"
		p.Stats = append(p.Stats, dashboard.Stat{Label: "queued", Metric: "marty_events_queue_depth", Kind: dashboard.Gauge})
	}
	p.Stats = append(p.Stats,
		dashboard.Stat{Label: "published/s", Metric: "marty_events_published_total", Kind: dashboard.Rate},
		dashboard.Stat{Label: "handled/s", Metric: "marty_events_handled_total", Kind: dashboard.Rate, Chart: true, Color: "#16a34a"},
		dashboard.Stat{Label: "failed/s", Metric: "marty_events_failed_total", Kind: dashboard.Rate, Chart: true, Color: "#dc2626"},
		dashboard.Stat{Label: "dead (total)", Metric: "marty_events_dead_total", Kind: dashboard.Total})
	p.Table = &dashboard.Table{
		Title: "Dead letters",
		Empty: "No dead letter.",
		Columns: []dashboard.Column{
			{Title: "handler", Field: "handler"}, {Title: "type", Field: "type"},
			{Title: "error", Field: "error", Format: dashboard.FormatError},
			{Title: "attempts", Field: "attempts"}, {Title: "at", Field: "at", Format: dashboard.FormatTime},
		},
		Rows: func(ctx context.Context) (any, error) {
			dls, err := store.List(ctx, panelDeadLetters)
			if err != nil {
				return nil, err
			}
			rows := make([]panelRow, len(dls))
			for i, dl := range dls {
				rows[i] = panelRow{ID: dl.ID, Handler: dl.Handler, EventID: dl.Envelope.ID, Type: dl.Envelope.Type,
					Error: dl.Error, Attempts: dl.Attempts, At: dl.At}
			}
			return rows, nil
		},
		Action: &dashboard.Action{Label: "re-drive", Path: "/events/dead/{id}/retry"},
	}
	return p
}
