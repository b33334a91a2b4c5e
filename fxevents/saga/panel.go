package saga

import (
	"context"
	"time"

	"github.com/martyfx/martyfx/fxmonitor/dashboard"
)

// panelRows is how many sagas the dashboard panel lists.
const panelRows = 50

// panelRow is a saga as the dashboard lists it (GET /sagas/{id} has its
// state and history).
type panelRow struct {
	ID        string    `json:"id"`
	Saga      string    `json:"saga"`
	Key       string    `json:"key"`
	Status    string    `json:"status"`
	LastStep  string    `json:"last_step"`
	Error     string    `json:"error"`
	UpdatedAt time.Time `json:"updated_at"`
}

// newPanel is the sagas' panel on fxmonitor's dashboard: started,
// completed, compensated per second, open and stuck sagas, and a table of
// the stuck, failing and running ones, each with its last step and a
// retry button (POST /sagas/{id}/retry).
func newPanel(r *Runtime, cfg Config) dashboard.Panel {
	return dashboard.Panel{
		Name: "sagas", Title: "Sagas", Subtitle: "process managers on the outbox",
		Stats: []dashboard.Stat{
			{Label: "open", Metric: "marty_saga_open", Kind: dashboard.Gauge, Chart: true, Color: "#7c3aed"},
			{Label: "started/s", Metric: "marty_saga_started_total", Kind: dashboard.Rate, Chart: true, Color: "#2563eb"},
			{Label: "completed/s", Metric: "marty_saga_completed_total", Kind: dashboard.Rate, Chart: true, Color: "#16a34a"},
			{Label: "compensated/s", Metric: "marty_saga_compensated_total", Kind: dashboard.Rate, Chart: true, Color: "#d97706"},
			{Label: "stuck (total)", Metric: "marty_saga_stuck_total", Kind: dashboard.Total},
		},
		Table: &dashboard.Table{
			Title: "Stuck, compensating and running sagas",
			Empty: "No open saga.",
			Columns: []dashboard.Column{
				{Title: "saga", Field: "saga"}, {Title: "key", Field: "key"}, {Title: "status", Field: "status"},
				{Title: "last step", Field: "last_step"}, {Title: "error", Field: "error", Format: dashboard.FormatError},
				{Title: "updated", Field: "updated_at", Format: dashboard.FormatTime},
			},
			Rows:   func(ctx context.Context) (any, error) { return r.panelRows(ctx, cfg.StuckAfter) },
			Action: &dashboard.Action{Label: "retry", Path: "/sagas/{id}/retry"},
		},
	}
}

// panelRows lists stuck sagas first (a parked step, or no step for
// stuckAfter), then compensating, then running ones.
func (r *Runtime) panelRows(ctx context.Context, stuckAfter time.Duration) ([]panelRow, error) {
	open, err := r.List(ctx, Filter{Status: []Status{StatusRunning, StatusCompensating}, Limit: 500})
	if err != nil {
		return nil, err
	}
	rows := make([]panelRow, 0, min(len(open), panelRows))
	add := func(keep func(Instance) bool, status func(Instance) string) {
		for _, in := range open {
			if len(rows) == panelRows || !keep(in) {
				continue
			}
			rows = append(rows, panelRow{ID: in.Saga + ":" + in.Key, Saga: in.Saga, Key: in.Key, Status: status(in),
				Error: in.LastError, UpdatedAt: in.UpdatedAt})
		}
	}
	stale := func(in Instance) bool { return time.Since(in.UpdatedAt) > stuckAfter }
	stuck := func(in Instance) bool { return in.Stuck || stale(in) }
	add(stuck, func(in Instance) string { return "stuck (" + string(in.Status) + ")" })
	add(func(in Instance) bool { return !stuck(in) && in.Status == StatusCompensating }, func(in Instance) string { return string(in.Status) })
	add(func(in Instance) bool { return !stuck(in) && in.Status == StatusRunning }, func(in Instance) string { return string(in.Status) })
	for i := range rows {
		if h, err := r.History(ctx, rows[i].Saga, rows[i].Key); err == nil && len(h) > 0 {
			rows[i].LastStep = h[len(h)-1].Step
		}
	}
	return rows, nil
}
