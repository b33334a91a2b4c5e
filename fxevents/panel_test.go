package fxevents_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

type panelOrderPlaced struct {
	ID string `json:"id"`
}

func (panelOrderPlaced) EventType() string { return "orders.placed" }

// panelState is the event bus' panel in the dashboard's state.
type panelState struct {
	Name     string `json:"name"`
	Title    string `json:"title"`
	Subtitle string `json:"subtitle"`
	Stats    []struct {
		Label string   `json:"label"`
		Value *float64 `json:"value"`
	} `json:"stats"`
	Table struct {
		Title  string `json:"title"`
		Action struct {
			Label  string `json:"label"`
			Method string `json:"method"`
			Path   string `json:"path"`
		} `json:"action"`
		Rows []struct {
			ID       string `json:"id"`
			Handler  string `json:"handler"`
			Type     string `json:"type"`
			Error    string `json:"error"`
			Attempts int    `json:"attempts"`
		} `json:"rows"`
		Error string `json:"error"`
	} `json:"table"`
}

type panelApp struct {
	t      *testing.T
	srv    *fxhttp.Server
	bus    fxevents.Bus
	client *http.Client
}

// startPanelApp runs fxevents with fxhttp's admin server and fxmonitor's
// dashboard, and a handler that fails while broken.
func startPanelApp(t *testing.T, env []string, broken *atomic.Bool, handled *atomic.Int64, opts ...fx.Option) *panelApp {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_SERVICE_NAME=orders", "MARTY_LOG_LEVEL=error",
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_EVENTS_MAX_ATTEMPTS=1",
		"MARTY_MONITOR_DASHBOARD_INTERVAL=50ms", "MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false",
		"MARTY_MONITOR_SYSTEM_ENABLED=false"}, env...))
	require.NoError(t, err)
	a := &panelApp{t: t, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
	app := fx.New(append([]fx.Option{fx.NopLogger, fxcore.Module, fxhttp.Module, fxmonitor.Module, fxevents.Module, fx.Replace(src),
		fxevents.AsHandler(fxevents.HandlerFunc("mailer", func(_ context.Context, _ panelOrderPlaced) error {
			if broken.Load() {
				return errors.New("smtp 127.0.0.1:25: connection refused")
			}
			handled.Add(1)
			return nil
		})),
		fx.Populate(&a.srv, &a.bus)}, opts...)...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, app.Start(ctx))
	t.Cleanup(func() {
		a.client.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, app.Stop(ctx))
	})
	return a
}

func (a *panelApp) panel() panelState {
	a.t.Helper()
	resp, err := a.client.Get("http://" + a.srv.AdminAddr() + "/dashboard/api/state")
	require.NoError(a.t, err)
	defer func() { _ = resp.Body.Close() }()
	require.Equal(a.t, http.StatusOK, resp.StatusCode)
	var st struct {
		Panels []panelState `json:"panels"`
	}
	require.NoError(a.t, json.NewDecoder(resp.Body).Decode(&st))
	for _, p := range st.Panels {
		if p.Name == "events" {
			return p
		}
	}
	a.t.Fatalf("no events panel among %d panels", len(st.Panels))
	return panelState{}
}

// post sends what the dashboard page sends for the row action: the
// admin route, from a browser page of the given Sec-Fetch-Site.
func (a *panelApp) post(path, site string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+a.srv.AdminAddr()+path, nil)
	require.NoError(a.t, err)
	req.Header.Set("Sec-Fetch-Site", site)
	resp, err := a.client.Do(req)
	require.NoError(a.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func labels(p panelState) []string {
	var out []string
	for _, s := range p.Stats {
		out = append(out, s.Label)
	}
	return out
}

// The event bus contributes its dashboard panel itself: its figures, its
// dead letters and their re-drive, an action on its own admin route that
// keeps that route's protection.
func TestDashboardPanelListsAndRedrivesDeadLetters(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	var handled atomic.Int64
	broken.Store(true)
	a := startPanelApp(t, nil, &broken, &handled)
	require.NoError(t, a.bus.Publish(context.Background(), panelOrderPlaced{ID: "42"}))

	var p panelState
	require.Eventually(t, func() bool { p = a.panel(); return len(p.Table.Rows) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Event bus", p.Title)
	require.Equal(t, "in-memory bus", p.Subtitle)
	require.Equal(t, []string{"queued", "published/s", "handled/s", "failed/s", "dead (total)"}, labels(p))
	require.Equal(t, "Dead letters", p.Table.Title)
	row := p.Table.Rows[0]
	require.Equal(t, "mailer", row.Handler)
	require.Equal(t, "orders.placed", row.Type)
	require.Contains(t, row.Error, "connection refused")
	require.Equal(t, 1, row.Attempts)
	require.Equal(t, "re-drive", p.Table.Action.Label)
	require.Equal(t, "POST", p.Table.Action.Method)
	require.Equal(t, "/events/dead/{id}/retry", p.Table.Action.Path)
	require.Eventually(t, func() bool {
		d := a.panel().Stats[4].Value
		return d != nil && *d == 1
	}, 10*time.Second, 20*time.Millisecond, "dead (total) counts it")

	path := strings.Replace(p.Table.Action.Path, "{id}", row.ID, 1)
	code, body := a.post(path, "cross-site")
	require.Equal(t, http.StatusForbidden, code, "fxhttp refuses a cross-site browser request: %s", body)
	require.Len(t, a.panel().Table.Rows, 1, "the refused request changed nothing")

	broken.Store(false)
	code, body = a.post(path, "same-origin")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "redriven")
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, a.panel().Table.Rows, "the re-driven letter left the list")
}

// With the outbox the panel shows the outbox's figures instead of the
// memory bus' queues.
func TestDashboardPanelOfTheOutbox(t *testing.T) {
	t.Parallel()
	var broken atomic.Bool
	var handled atomic.Int64
	a := startPanelApp(t, []string{"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=50ms",
		"MARTY_DB_DSN=file:" + filepath.Join(t.TempDir(), "events.db")}, &broken, &handled, fxrepo.Module)
	require.NoError(t, a.bus.Publish(context.Background(), panelOrderPlaced{ID: "7"}))
	require.Eventually(t, func() bool { return handled.Load() == 1 }, 10*time.Second, 20*time.Millisecond)
	var p panelState
	require.Eventually(t, func() bool {
		p = a.panel()
		return p.Stats[0].Value != nil && *p.Stats[0].Value == 0
	}, 10*time.Second, 20*time.Millisecond, "pending is read from marty_outbox_pending")
	require.Equal(t, "transactional outbox", p.Subtitle)
	require.Equal(t, []string{"pending", "lag", "delivered/s", "published/s", "handled/s", "failed/s", "dead (total)"}, labels(p))
	require.Empty(t, p.Table.Rows)
	require.Empty(t, p.Table.Error)
}
