package fxmonitor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

// dashEnv samples fast so tests see several samples quickly.
var dashEnv = append([]string{"MARTY_MONITOR_DASHBOARD_INTERVAL=50ms", "MARTY_MONITOR_DASHBOARD_WINDOW=1m"}, quiet...)

type redSeries struct {
	Key    string `json:"key"`
	Group  string `json:"group"`
	Name   string `json:"name"`
	Total  float64
	Window struct {
		Rate       *float64 `json:"rate"`
		ErrorRatio *float64 `json:"error_ratio"`
		P50        *float64 `json:"p50"`
		P99        *float64 `json:"p99"`
	} `json:"window"`
	Points struct {
		Rate []*float64 `json:"rate"`
		P99  []*float64 `json:"p99"`
	} `json:"points"`
}

type dashState struct {
	Service struct {
		Name       string `json:"name"`
		InstanceID string `json:"instance_id"`
	} `json:"service"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Probes        map[string]string `json:"probes"`
	Checks        []struct {
		Name            string   `json:"name"`
		Status          string   `json:"status"`
		Error           string   `json:"error"`
		LastError       string   `json:"last_error"`
		DurationSeconds float64  `json:"duration_seconds"`
		History         []string `json:"history"`
	} `json:"checks"`
	Breakers []struct {
		Name          string `json:"name"`
		State         string `json:"state"`
		TotalFailures int    `json:"total_failures"`
	} `json:"breakers"`
	Alerts []struct {
		Rule   string            `json:"rule"`
		State  string            `json:"state"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
	Rules int       `json:"rules"`
	Times []float64 `json:"times"`
	HTTP  struct {
		Present bool        `json:"present"`
		Series  []redSeries `json:"series"`
	} `json:"http"`
	GRPC struct {
		Present bool `json:"present"`
	} `json:"grpc"`
	Panels []panelState `json:"panels"`
	Graph  bool         `json:"graph"`
}

type panelState struct {
	Name     string `json:"name"`
	Title    string `json:"title"`
	Subtitle string `json:"subtitle"`
	Stats    []struct {
		Label  string     `json:"label"`
		Kind   string     `json:"kind"`
		Value  *float64   `json:"value"`
		Chart  bool       `json:"chart"`
		Color  string     `json:"color"`
		Points []*float64 `json:"points"`
	} `json:"stats"`
	Table *struct {
		Title   string              `json:"title"`
		Columns []map[string]string `json:"columns"`
		Empty   string              `json:"empty"`
		Key     string              `json:"key"`
		Action  *struct {
			Label  string `json:"label"`
			Method string `json:"method"`
			Path   string `json:"path"`
		} `json:"action"`
		Rows  []map[string]any `json:"rows"`
		Error string           `json:"error"`
	} `json:"table"`
}

func (h *harness) state() dashState {
	h.t.Helper()
	code, body, hdr := h.get("/dashboard/api/state")
	require.Equal(h.t, http.StatusOK, code, body)
	require.Equal(h.t, "application/json", hdr.Get("Content-Type"))
	var st dashState
	require.NoError(h.t, json.Unmarshal([]byte(body), &st), body)
	return st
}

func (h *harness) public(method, path string) int {
	h.t.Helper()
	req, err := http.NewRequest(method, "http://"+h.srv.Addr()+path, nil)
	require.NoError(h.t, err)
	resp, err := h.client.Do(req)
	require.NoError(h.t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func series(st dashState, key string) *redSeries {
	for i := range st.HTTP.Series {
		if st.HTTP.Series[i].Key == key {
			return &st.HTTP.Series[i]
		}
	}
	return nil
}

func TestDashboardStateAfterRealRequests(t *testing.T) {
	t.Parallel()
	h := start(t, dashEnv,
		fxhttp.AsRoute("GET /v1/orders/{id}", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.PathValue("id") == "bad" {
					time.Sleep(30 * time.Millisecond) // lands in the (25ms, 50ms] bucket
					http.Error(w, "boom", http.StatusInternalServerError)
					return
				}
				_, _ = w.Write([]byte("ok"))
			})
		}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "db", Kinds: fxmonitor.Readiness, Critical: true,
			Func: func(context.Context) error { return errors.New("dial tcp 127.0.0.1:5432: connection refused") }}),
		fxmonitor.AsCheck(fxmonitor.Check{Name: "cache", Kinds: fxmonitor.Liveness | fxmonitor.Readiness,
			Interval: 20 * time.Millisecond, Func: func(context.Context) error { return nil }}),
		fx.Invoke(func(b *breaker.Breakers) {
			_ = b.Get("payments").Execute(func() error { return errors.New("payments down") })
		}),
	)

	// First look: the page's own requests are the admin server's and never
	// show as the service's traffic.
	st := h.state()
	require.Equal(t, "orders", st.Service.Name)
	require.NotEmpty(t, st.Service.InstanceID)
	require.True(t, st.Graph)
	require.False(t, st.GRPC.Present, "no gRPC server in this app")
	require.Empty(t, st.Panels, "no module registered a panel")

	for range 10 {
		require.Equal(t, http.StatusOK, h.public("GET", "/v1/orders/42"))
	}
	for range 5 {
		require.Equal(t, http.StatusInternalServerError, h.public("GET", "/v1/orders/bad"))
	}

	var s *redSeries
	require.Eventually(t, func() bool {
		st = h.state()
		s = series(st, "GET /v1/orders/{id}")
		return s != nil && s.Total == 15 && len(st.Times) >= 3
	}, 10*time.Second, 50*time.Millisecond)
	require.Equal(t, "GET", s.Group)
	require.Equal(t, "/v1/orders/{id}", s.Name)
	require.NotNil(t, s.Window.Rate)
	require.Greater(t, *s.Window.Rate, 0.0)
	require.NotNil(t, s.Window.ErrorRatio)
	require.InDelta(t, 5.0/15, *s.Window.ErrorRatio, 1e-9, "5 of 15 requests answered 500")
	require.NotNil(t, s.Window.P50)
	require.Less(t, *s.Window.P50, 0.025, "two thirds of the requests are instant")
	require.NotNil(t, s.Window.P99)
	require.Greater(t, *s.Window.P99, 0.025, "the slow third (>= 30ms) sets p99")
	require.Less(t, *s.Window.P99, 10.0, "within the buckets")
	require.Len(t, s.Points.Rate, len(st.Times))
	var drawn int
	for _, v := range s.Points.Rate {
		if v != nil && *v > 0 {
			drawn++
		}
	}
	require.Positive(t, drawn, "the chart has points with traffic")
	for _, other := range st.HTTP.Series {
		require.NotContains(t, other.Name, "/dashboard", "admin traffic is not the service's")
	}

	// Checks: the failing one with its error and a history; the background one passing.
	byName := map[string]int{}
	for i, c := range st.Checks {
		byName[c.Name] = i
	}
	require.Contains(t, byName, "db")
	require.Contains(t, byName, "cache")
	db := st.Checks[byName["db"]]
	require.Equal(t, "failing", db.Status)
	require.Contains(t, db.Error, "connection refused")
	require.NotEmpty(t, db.History)
	require.Equal(t, "failing", db.History[len(db.History)-1])
	cache := st.Checks[byName["cache"]]
	require.Equal(t, "passing", cache.Status)
	require.GreaterOrEqual(t, len(cache.History), 2)
	require.Equal(t, "failing", st.Probes["readiness"])

	require.Len(t, st.Breakers, 1)
	require.Equal(t, "payments", st.Breakers[0].Name)
	require.Equal(t, "closed", st.Breakers[0].State)
	require.Equal(t, 1, st.Breakers[0].TotalFailures)
	require.Positive(t, st.UptimeSeconds)
}

func TestDashboardEventStreamPushesAndEndsAtShutdown(t *testing.T) {
	t.Parallel()
	// The stream outlives the admin server's write timeout (200ms here:
	// eight pushes 50ms apart take longer).
	h := start(t, append([]string{"MARTY_HTTP_WRITE_TIMEOUT=200ms"}, dashEnv...))
	req, err := http.NewRequest(http.MethodGet, h.admin("/dashboard/api/events"), nil)
	require.NoError(t, err)
	client := &http.Client{Transport: h.client.Transport} // no overall timeout: a stream
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 8<<20)
	var events []dashState
	var event string
	began := time.Now()
	for len(events) < 8 && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			require.Equal(t, "state", event)
			var st dashState
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &st))
			events = append(events, st)
		}
	}
	require.NoError(t, sc.Err())
	require.Len(t, events, 8)
	require.Greater(t, time.Since(began), 200*time.Millisecond)
	require.Equal(t, "orders", events[0].Service.Name)
	require.Greater(t, len(events[7].Times), len(events[0].Times), "each push carries the new samples")

	// Stopping the app ends the stream promptly instead of holding up the
	// admin server's graceful stop until its deadline.
	h.stopped.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.app.Stop(ctx), "the stream does not hold up the admin server's stop until its deadline")
	_, err = io.Copy(io.Discard, resp.Body)
	require.NoError(t, err, "the stream ended cleanly")
}

func TestDashboardPageAssetsAndGraph(t *testing.T) {
	t.Parallel()
	h := start(t, dashEnv)
	noFollow := &http.Client{Transport: h.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code, _, hdr := fetch(t, noFollow, h.admin("/dashboard"))
	require.Equal(t, http.StatusMovedPermanently, code)
	require.Equal(t, "/dashboard/", hdr.Get("Location"))

	code, page, hdr := h.get("/dashboard/")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "text/html; charset=utf-8", hdr.Get("Content-Type"))
	csp := hdr.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'self'", "nothing from elsewhere")
	require.Contains(t, csp, "frame-ancestors 'none'")
	for _, asset := range []struct{ path, ctype, contains string }{
		{"assets/app.js", "text/javascript", "api/events"},
		{"assets/app.css", "text/css", "--accent"},
		{"assets/uPlot.iife.min.js", "text/javascript", "uPlot"},
		{"assets/uPlot.min.css", "text/css", ".uplot"},
		{"assets/viz-global.js", "text/javascript", "Viz.js 3.31.0"},
		{"assets/LICENSE.uplot.txt", "text/plain", "Leon Sorokin"},
		{"assets/LICENSE.viz-js.txt", "text/plain", "Michael Daines"},
	} {
		if strings.HasSuffix(asset.path, ".js") || strings.HasSuffix(asset.path, ".css") {
			require.Contains(t, page, `"`+asset.path+`"`, "the page loads %s", asset.path)
		}
		code, body, hdr := h.get("/dashboard/" + asset.path)
		require.Equal(t, http.StatusOK, code, asset.path)
		require.True(t, strings.HasPrefix(hdr.Get("Content-Type"), asset.ctype), "%s: %s", asset.path, hdr.Get("Content-Type"))
		require.Contains(t, body, asset.contains, asset.path)
		require.Equal(t, "nosniff", hdr.Get("X-Content-Type-Options"))
	}
	require.NotContains(t, page, "http://", "no external asset")
	require.NotContains(t, page, "https://", "no external asset")
	code, _, _ = h.get("/dashboard/assets/nope.js")
	require.Equal(t, http.StatusNotFound, code)

	code, body, _ := h.get("/dashboard/api/graph")
	require.Equal(t, http.StatusOK, code)
	var g struct {
		DOT string `json:"dot"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &g))
	require.True(t, strings.HasPrefix(g.DOT, "digraph"), g.DOT)
	require.Contains(t, g.DOT, `label="newHealth"`, "the app's constructors are nodes")
	require.Contains(t, g.DOT, `label="newServer"`) // fxhttp's provider
	require.Contains(t, g.DOT, "*dashboard.Dashboard")

	// Only on the admin server.
	require.Equal(t, http.StatusNotFound, h.public("GET", "/dashboard/"))
	require.Equal(t, http.StatusNotFound, h.public("GET", "/dashboard/api/state"))
}

func TestDashboardDisabled(t *testing.T) {
	t.Parallel()
	h := start(t, append([]string{"MARTY_MONITOR_DASHBOARD=false"}, quiet...))
	for _, p := range []string{"/dashboard", "/dashboard/", "/dashboard/api/state"} {
		code, _, _ := h.get(p)
		require.Equal(t, http.StatusNotFound, code, p)
	}
	code, _, _ := h.get("/statusz")
	require.Equal(t, http.StatusOK, code, "the rest of the admin server is unchanged")
}

func TestDashboardBadConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{
		"MARTY_MONITOR_DASHBOARD_INTERVAL=0s": "MARTY_MONITOR_DASHBOARD_INTERVAL",
		"MARTY_MONITOR_DASHBOARD_WINDOW=1s":   "MARTY_MONITOR_DASHBOARD_WINDOW",
		"MARTY_MONITOR_DASHBOARD=maybe":       "MARTY_MONITOR_DASHBOARD",
	} {
		_, err := newApp(t, []string{env})
		require.Error(t, err, env)
		require.Contains(t, err.Error(), want, env)
	}
}
