package fxmonitor_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/dashboard"
)

type job struct {
	ID    string    `json:"id"`
	Queue string    `json:"queue"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
}

// jobsPanel is a module's panel: two metrics of its own, one that does not
// exist, and a table of failed jobs with a retry action.
func jobsPanel(rows func(context.Context) (any, error)) dashboard.Panel {
	return dashboard.Panel{
		Name: "jobs", Title: "Job queue", Subtitle: "in memory",
		Stats: []dashboard.Stat{
			{Label: "waiting", Metric: "jobs_waiting", Kind: dashboard.Gauge, Chart: true, Color: "#7c3aed"},
			{Label: "done/s", Metric: "jobs_done_total", Kind: dashboard.Rate, Chart: true},
			{Label: "done", Metric: "jobs_done_total", Kind: dashboard.Total},
			{Label: "oldest", Metric: "jobs_oldest_seconds", Kind: dashboard.Seconds},
		},
		Table: &dashboard.Table{
			Title: "Failed jobs", Empty: "No failed job.",
			Columns: []dashboard.Column{{Title: "queue", Field: "queue"}, {Title: "error", Field: "error", Format: dashboard.FormatError},
				{Title: "at", Field: "at", Format: dashboard.FormatTime}},
			Rows:   rows,
			Action: &dashboard.Action{Label: "retry", Path: "/jobs/{id}/retry"},
		},
	}
}

func panelNamed(t *testing.T, st dashState, name string) panelState {
	t.Helper()
	for _, p := range st.Panels {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no panel %q in %v", name, st.Panels)
	return panelState{}
}

// A module's panel shows its own metrics and rows; the dashboard knows
// nothing of them but what the panel says.
func TestDashboardShowsARegisteredPanel(t *testing.T) {
	t.Parallel()
	waiting := prometheus.NewGauge(prometheus.GaugeOpts{Name: "jobs_waiting", Help: "Jobs waiting."})
	done := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "jobs_done_total", Help: "Jobs done."}, []string{"queue"})
	failed := []job{{ID: "7", Queue: "mail", Error: "smtp: connection refused", At: time.Unix(1_800_000_000, 0).UTC()}}
	h := start(t, dashEnv,
		fxmonitor.AsCollector(waiting), fxmonitor.AsCollector(done),
		fxmonitor.AsPanel(func() dashboard.Panel {
			return jobsPanel(func(context.Context) (any, error) { return failed, nil })
		}),
	)
	waiting.Set(4)
	done.WithLabelValues("mail").Add(10)
	done.WithLabelValues("sms").Add(5)

	var p panelState
	require.Eventually(t, func() bool {
		p = panelNamed(t, h.state(), "jobs")
		return p.Stats[0].Value != nil && *p.Stats[0].Value == 4 && p.Stats[2].Value != nil && *p.Stats[2].Value == 15
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Job queue", p.Title)
	require.Equal(t, "in memory", p.Subtitle)
	require.Equal(t, []string{"waiting", "done/s", "done", "oldest"},
		[]string{p.Stats[0].Label, p.Stats[1].Label, p.Stats[2].Label, p.Stats[3].Label})
	require.Equal(t, "#7c3aed", p.Stats[0].Color)
	require.NotEmpty(t, p.Stats[0].Points, "charted: one point per sample")
	require.NotEmpty(t, p.Stats[1].Points)
	require.Empty(t, p.Stats[2].Points, "not charted")
	require.Nil(t, p.Stats[3].Value, "a metric not in the registry shows no value")

	require.NotNil(t, p.Table)
	require.Equal(t, "Failed jobs", p.Table.Title)
	require.Equal(t, "id", p.Table.Key, "the default key")
	require.Equal(t, "POST", p.Table.Action.Method, "the default method")
	require.Equal(t, "/jobs/{id}/retry", p.Table.Action.Path)
	require.Equal(t, []map[string]string{{"title": "queue", "field": "queue"}, {"title": "error", "field": "error", "format": "error"},
		{"title": "at", "field": "at", "format": "time"}}, p.Table.Columns)
	require.Len(t, p.Table.Rows, 1)
	require.Equal(t, "7", p.Table.Rows[0]["id"])
	require.Equal(t, "2027-01-15T08:00:00Z", p.Table.Rows[0]["at"])
	require.Empty(t, p.Table.Error)

	// Counters keep counting: the rate follows.
	done.WithLabelValues("mail").Add(100)
	require.Eventually(t, func() bool {
		r := panelNamed(t, h.state(), "jobs").Stats[1].Value
		return r != nil && *r > 0
	}, 10*time.Second, 20*time.Millisecond)
}

func TestPanelRowsErrorIsShown(t *testing.T) {
	t.Parallel()
	h := start(t, dashEnv,
		fxmonitor.AsPanel(jobsPanel(func(context.Context) (any, error) { return nil, errors.New("jobs: store unavailable") })),
		fxmonitor.AsPanel(dashboard.Panel{Name: "odd", Title: "Odd", Order: 1, Table: &dashboard.Table{Columns: []dashboard.Column{{Field: "x"}},
			Rows: func(context.Context) (any, error) { return map[string]int{"x": 1}, nil }}}),
		fxmonitor.AsPanel(dashboard.Panel{Name: "none", Title: "None", Order: 1, Table: &dashboard.Table{Columns: []dashboard.Column{{Field: "x"}},
			Rows: func(context.Context) (any, error) { return nil, nil }}}),
	)
	st := h.state()
	require.Equal(t, []string{"jobs", "none", "odd"}, []string{st.Panels[0].Name, st.Panels[1].Name, st.Panels[2].Name},
		"by Order, then by name")
	jobs := panelNamed(t, st, "jobs")
	require.Equal(t, "jobs: store unavailable", jobs.Table.Error)
	require.NotNil(t, jobs.Table.Rows)
	require.Empty(t, jobs.Table.Rows)
	require.Equal(t, "rows must encode as a JSON array", panelNamed(t, st, "odd").Table.Error)
	none := panelNamed(t, st, "none")
	require.Empty(t, none.Table.Error)
	require.Empty(t, none.Table.Rows)
}

// Open pages share one reading of the rows per sample; GET api/state reads
// them again (a page refreshes after an action).
func TestPanelRowsAreReadOncePerSample(t *testing.T) {
	t.Parallel()
	var reads atomic.Int64
	h := start(t, append([]string{"MARTY_MONITOR_DASHBOARD_INTERVAL=200ms", "MARTY_MONITOR_DASHBOARD_WINDOW=1m"}, quiet...),
		fxmonitor.AsPanel(jobsPanel(func(context.Context) (any, error) { reads.Add(1); return []job{}, nil })),
	)
	client := &http.Client{Transport: h.client.Transport}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodGet, h.admin("/dashboard/api/events"), nil)
			if !assertNoError(t, err) {
				return
			}
			resp, err := client.Do(req)
			if !assertNoError(t, err) {
				return
			}
			defer func() { _ = resp.Body.Close() }()
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
			for n := 0; n < 3 && sc.Scan(); {
				if strings.HasPrefix(sc.Text(), "data: ") {
					n++
				}
			}
		}()
	}
	wg.Wait()
	before := reads.Load()
	st := h.state()
	require.Equal(t, before+1, reads.Load(), "GET api/state reads the rows")
	require.LessOrEqual(t, before, int64(len(st.Times)),
		"six pushes to two pages read the rows at most once per sample (%d samples)", len(st.Times))
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func TestBadPanelsFailStart(t *testing.T) {
	t.Parallel()
	rows := func(context.Context) (any, error) { return nil, nil }
	for _, tc := range []struct {
		opt  any
		want string
	}{
		{"jobs", "fxmonitor.AsPanel: got string, want a dashboard.Panel"},
		{dashboard.Panel{Name: "Jobs Queue", Title: "x"}, `fxmonitor.AsPanel: panel "Jobs Queue": the name must match`},
		{dashboard.Panel{Name: "jobs"}, `panel "jobs" needs a Title`},
		{dashboard.Panel{Name: "jobs", Title: "x", Stats: []dashboard.Stat{{Label: "n", Metric: "m", Kind: "avg"}}}, `stat "n": unknown kind "avg"`},
		{dashboard.Panel{Name: "jobs", Title: "x", Table: &dashboard.Table{Rows: rows}}, `panel "jobs": its table needs Rows and Columns`},
		{dashboard.Panel{Name: "jobs", Title: "x", Table: &dashboard.Table{Rows: rows, Columns: []dashboard.Column{{Field: "id"}},
			Action: &dashboard.Action{Label: "retry", Path: "jobs/retry"}}}, `its table's action needs a Label and a Path such as /things/{id}/retry (got "jobs/retry")`},
	} {
		_, err := newApp(t, quiet, fxmonitor.AsPanel(tc.opt))
		require.ErrorContains(t, err, tc.want)
	}
	p := dashboard.Panel{Name: "jobs", Title: "Jobs"}
	_, err := newApp(t, quiet, fxmonitor.AsPanel(p), fxmonitor.AsPanel(p))
	require.ErrorContains(t, err, `fxmonitor: dashboard panels: two panels are named "jobs"`)
}
