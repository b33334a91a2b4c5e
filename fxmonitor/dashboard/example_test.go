package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/martyfx/martyfx/fxmonitor/dashboard"
)

// A module's panel: a figure read from the registry and a table of rows the
// module lists, each with a button calling one of its admin routes.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "jobs_waiting", Help: "Jobs waiting."})
	reg.MustRegister(waiting)
	waiting.Set(3)

	d, err := dashboard.New(dashboard.Options{Gatherer: reg, Panels: []dashboard.Panel{{
		Name: "jobs", Title: "Job queue",
		Stats: []dashboard.Stat{{Label: "waiting", Metric: "jobs_waiting", Kind: dashboard.Gauge, Chart: true}},
		Table: &dashboard.Table{
			Title:   "Failed jobs",
			Columns: []dashboard.Column{{Title: "job", Field: "id"}, {Title: "error", Field: "error", Format: dashboard.FormatError}},
			Rows: func(context.Context) (any, error) {
				return []map[string]string{{"id": "42", "error": "smtp: connection refused"}}, nil
			},
			Action: &dashboard.Action{Label: "retry", Path: "/jobs/{id}/retry"},
		},
	}}})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = d.Start(ctx) // samples the registry now and every Interval
	defer func() { _ = d.Stop(ctx) }()

	rec := httptest.NewRecorder() // the page reads /dashboard/api/state and /dashboard/api/events
	d.ServeHTTP(rec, httptest.NewRequest("GET", dashboard.Path+"/api/state", nil))
	var st struct {
		Panels []struct {
			Title string `json:"title"`
			Stats []struct {
				Label string  `json:"label"`
				Value float64 `json:"value"`
			} `json:"stats"`
			Table struct {
				Rows   []map[string]string `json:"rows"`
				Action struct{ Method, Path string }
			} `json:"table"`
		} `json:"panels"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &st)
	p := st.Panels[0]
	fmt.Println(p.Title+":", p.Stats[0].Label, p.Stats[0].Value)
	fmt.Println(p.Table.Rows[0]["id"], p.Table.Rows[0]["error"], "→", p.Table.Action.Method, p.Table.Action.Path)
	// Output:
	// Job queue: waiting 3
	// 42 smtp: connection refused → POST /jobs/{id}/retry
}
