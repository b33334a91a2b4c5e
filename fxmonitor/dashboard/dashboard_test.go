package dashboard_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/dashboard"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	_, err := dashboard.New(dashboard.Options{})
	require.ErrorContains(t, err, "fxmonitor: the dashboard needs a prometheus.Gatherer")
	p := dashboard.Panel{Name: "jobs", Title: "Jobs"}
	_, err = dashboard.New(dashboard.Options{Gatherer: prometheus.NewRegistry(), Panels: []dashboard.Panel{p, p, {Name: "x"}}})
	require.EqualError(t, err, `fxmonitor: dashboard panels: two panels are named "jobs"; panel "x" needs a Title`)
}

// The dashboard knows no module: its page and script name no route or
// metric of another module (fxevents' panel comes from fxevents).
func TestThePageNamesNoModule(t *testing.T) {
	t.Parallel()
	d, err := dashboard.New(dashboard.Options{Gatherer: prometheus.NewRegistry()})
	require.NoError(t, err)
	for _, path := range []string{"/dashboard/", "/dashboard/assets/app.js"} {
		code, body := get(t, d, path)
		require.Equal(t, http.StatusOK, code, path)
		for _, word := range []string{"/events/dead", "marty_outbox", "marty_events", "dead letter", "Dead letter", "redrive"} {
			require.NotContains(t, body, word, path)
		}
	}
}

// A panel's rows that panic or do not encode as a list are shown as an
// error in the panel, and the rest of the state is served.
func TestBadRowsAreAnErrorInThePanel(t *testing.T) {
	t.Parallel()
	table := func(rows func(context.Context) (any, error)) *dashboard.Table {
		return &dashboard.Table{Columns: []dashboard.Column{{Title: "x", Field: "x"}}, Rows: rows}
	}
	d, err := dashboard.New(dashboard.Options{Gatherer: prometheus.NewRegistry(), Panels: []dashboard.Panel{
		{Name: "a", Title: "A", Table: table(func(context.Context) (any, error) { panic("nil map") })},
		{Name: "b", Title: "B", Table: table(func(context.Context) (any, error) { return make(chan int), nil })},
		{Name: "c", Title: "C", Table: table(func(context.Context) (any, error) { return []map[string]int{{"x": 1}}, nil })},
	}})
	require.NoError(t, err)
	code, body := get(t, d, "/dashboard/api/state")
	require.Equal(t, http.StatusOK, code)
	var st struct {
		Panels []struct {
			Name  string `json:"name"`
			Table struct {
				Rows  []map[string]int `json:"rows"`
				Error string           `json:"error"`
			} `json:"table"`
		} `json:"panels"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &st), body)
	require.Len(t, st.Panels, 3)
	require.Equal(t, "reading the rows panicked", st.Panels[0].Table.Error)
	require.Contains(t, st.Panels[1].Table.Error, "encode rows: json: unsupported type: chan int")
	require.Empty(t, st.Panels[2].Table.Error)
	require.Equal(t, []map[string]int{{"x": 1}}, st.Panels[2].Table.Rows)
}

// Options.Stopping ends the event streams when shutdown begins.
func TestStoppingEndsTheStreams(t *testing.T) {
	t.Parallel()
	stopping := fxcore.NewStopping()
	d, err := dashboard.New(dashboard.Options{Gatherer: prometheus.NewRegistry(), Stopping: stopping})
	require.NoError(t, err)
	require.NoError(t, d.Start(context.Background()))
	srv := httptest.NewServer(d)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/dashboard/api/events")
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	buf := make([]byte, 512)
	_, err = resp.Body.Read(buf)
	require.NoError(t, err, "the first push")
	stopping.Begin()
	for err == nil {
		_, err = resp.Body.Read(buf)
	}
	require.ErrorIs(t, err, io.EOF, "the stream ended cleanly")
	require.NoError(t, d.Stop(context.Background()))
}
