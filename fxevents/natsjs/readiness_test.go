package natsjs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/health"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/nettest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// monitoredApp is a testApp with the HTTP servers and fxmonitor: probes on
// the admin server, alerts evaluated in process.
type monitoredApp struct {
	*testApp
	srv    *fxhttp.Server
	health *health.Health
	alerts *alert.Evaluator
	client *http.Client
}

// monitorEnv keeps the machine-dependent built-in checks out of the verdict
// and evaluates the alerts often, with a short For.
var monitorEnv = []string{
	"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
	"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false",
	"MARTY_MONITOR_ALERT_INTERVAL=200ms", "MARTY_MONITOR_CHECK_ALERT_FOR=1s",
}

func newMonitoredApp(t *testing.T, service string, env []string, opts ...fx.Option) *monitoredApp {
	t.Helper()
	m := &monitoredApp{}
	ta, all := appOptions(t, service, append(append([]string{}, monitorEnv...), env...), opts...)
	m.testApp = ta
	all = append(all, fxrepo.Module, fxhttp.Module, fxmonitor.Module,
		fx.Populate(&ta.db, &ta.uow, &m.srv, &m.health, &m.alerts))
	ta.app = fxtest.New(t, all...)
	require.NoError(t, ta.app.Err())
	ta.app.RequireStart()
	tr := &http.Transport{}
	m.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() { ta.stop(t); tr.CloseIdleConnections() })
	return m
}

// do sends a request and returns the status code and body.
func (m *monitoredApp) do(t *testing.T, method, url string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(t, err)
	resp, err := m.client.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func (m *monitoredApp) readyz(t *testing.T) (int, string) {
	t.Helper()
	return m.do(t, http.MethodGet, "http://"+m.srv.AdminAddr()+"/readyz", nil)
}

func (m *monitoredApp) create(t *testing.T, seq int) int {
	t.Helper()
	code, _ := m.do(t, http.MethodPost, "http://"+m.srv.Addr()+"/orders?seq="+itoa(seq), nil)
	return code
}

// verboseCheck is a check in /readyz?verbose.
type verboseCheck struct {
	Name     string `json:"name"`
	Critical bool   `json:"critical"`
	Status   string `json:"status"`
	Error    string `json:"error"`
}

func (m *monitoredApp) verbose(t *testing.T) (int, string, map[string]verboseCheck) {
	t.Helper()
	code, body := m.do(t, http.MethodGet, "http://"+m.srv.AdminAddr()+"/readyz?verbose", nil)
	var rep struct {
		Status string         `json:"status"`
		Checks []verboseCheck `json:"checks"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &rep), body)
	out := map[string]verboseCheck{}
	for _, c := range rep.Checks {
		out[c.Name] = c
	}
	return code, rep.Status, out
}

// createRoute is "POST /orders?seq=N": an order row and its OrderPlaced
// event in one unit of work (the outbox), 201 on success.
func createRoute(uow fxrepo.UnitOfWork, bus fxevents.Bus, db *gorm.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seq := r.URL.Query().Get("seq")
		err := uow.Do(r.Context(), func(ctx context.Context) error {
			if err := fxrepo.DB(ctx, db).Exec("INSERT INTO orders (seq) VALUES (?)", seq).Error; err != nil {
				return err
			}
			var n int
			_, _ = fmt.Sscan(seq, &n)
			return bus.Publish(ctx, OrderPlaced{OrderID: "o" + itoa(n%7), Seq: n})
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	})
}

// effectHandler records each OrderPlaced as a row of effects, once per
// event thanks to the inbox.
func effectHandler(db *gorm.DB) fxevents.Handler {
	return fxevents.Idempotent(fxevents.HandlerFunc("mailer", func(ctx context.Context, e OrderPlaced) error {
		return fxrepo.DB(ctx, db).Exec("INSERT INTO effects (seq) VALUES (?)", e.Seq).Error
	}))
}

// Issue 18, item 2: under the outbox bus a NATS outage is absorbed. With
// NATS stopped for 15 s, readiness answers 200 to every poll, creates
// succeed, /readyz?verbose shows nats failing (non-critical, "degraded"),
// the MartyHealthCheckDegraded alert fires with check="nats"; after the
// restart every event takes effect exactly once.
func TestNATSOutageUnderTheOutboxKeepsReadiness(t *testing.T) {
	dsn := pgtest.NewDatabase(t) // skips without MARTY_TEST_POSTGRES_DSN
	dir, port := t.TempDir(), nettest.FreePort(t)
	srv := startServer(t, dir, port)
	tg := newTarget(t, srv.ClientURL())
	m := newMonitoredApp(t, "orders", tg.env("MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=100ms",
		"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+dsn, "MARTY_NATS_READINESS_GRACE=1s"),
		fxhttp.AsRoute("POST /orders", createRoute),
		fxevents.AsHandler(effectHandler),
	)
	// The app's tables, before any request or event.
	require.NoError(t, m.db.Exec("CREATE TABLE orders (seq INTEGER NOT NULL)").Error)
	require.NoError(t, m.db.Exec("CREATE TABLE effects (seq INTEGER NOT NULL)").Error)

	code, body := m.readyz(t)
	require.Equal(t, http.StatusOK, code, body)
	_, _, checks := m.verbose(t)
	require.False(t, checks["nats"].Critical, "under the outbox the nats check is not critical")
	require.True(t, checks["db"].Critical, "the database stays critical")
	require.False(t, checks["events"].Critical)

	seq := 0
	for range 20 {
		require.Equal(t, http.StatusCreated, m.create(t, seq))
		seq++
	}
	effects := func() (rows, distinct int64) {
		require.NoError(t, m.db.Raw("SELECT COUNT(*), COUNT(DISTINCT seq) FROM effects").Row().Scan(&rows, &distinct))
		return rows, distinct
	}
	eventually(t, func() bool { n, _ := effects(); return n == 20 }, "events flow before the outage")

	srv.Shutdown()
	srv.WaitForShutdown()
	var polls, created atomic.Int64
	// The outage: 15 s of creates and readiness polls.
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		code, body := m.readyz(t)
		require.Equal(t, http.StatusOK, code, "readiness stays up while NATS is down: %s", body)
		polls.Add(1)
		require.Equal(t, http.StatusCreated, m.create(t, seq), "creates succeed while NATS is down")
		seq++
		created.Add(1)
		time.Sleep(50 * time.Millisecond)
	}
	// Still down: the verbose probe and the alert report the dependency.
	eventually(t, func() bool {
		code, status, checks := m.verbose(t)
		return code == http.StatusOK && status == "degraded" && checks["nats"].Status == "failing" && !checks["nats"].Critical
	}, "/readyz?verbose shows nats failing, non-critical, readiness degraded")
	_, _, checks = m.verbose(t)
	require.Contains(t, checks["nats"].Error, "natsjs: disconnected from nats://127.0.0.1:"+itoa(port))
	code, body = m.readyz(t)
	require.Equal(t, http.StatusOK, code)
	require.True(t, strings.HasPrefix(body, "degraded\n"), body)
	require.Contains(t, body, "[-]nats failing (non-critical): natsjs: disconnected from")
	eventually(t, func() bool {
		for _, a := range m.alerts.Active() {
			if a.Rule == fxmonitor.AlertCheckDegraded && a.State == alert.Firing && a.Labels["check"] == "nats" {
				return true
			}
		}
		return false
	}, "the MartyHealthCheckDegraded alert fires for nats")
	var pending int64
	require.NoError(t, m.db.Raw("SELECT COUNT(*) FROM marty_outbox WHERE delivered_at IS NULL").Scan(&pending).Error)
	require.Positive(t, pending, "the outbox holds the events of the outage")
	t.Logf("outage: %d readiness polls all 200, %d creates all 201, %d events waiting in the outbox", polls.Load(), created.Load(), pending)

	startServer(t, dir, port)
	eventually(t, func() bool { n, _ := effects(); return n >= int64(seq) }, "every event takes effect after the restart")
	time.Sleep(300 * time.Millisecond) // a duplicate would land now
	rows, distinct := effects()
	require.Equal(t, int64(seq), rows, "each event took effect exactly once")
	require.Equal(t, int64(seq), distinct)
	var orders int64
	require.NoError(t, m.db.Raw("SELECT COUNT(*) FROM orders").Scan(&orders).Error)
	require.Equal(t, int64(seq), orders)
	eventually(t, func() bool { _, _, c := m.verbose(t); return c["nats"].Status == "passing" }, "nats passes again")
	eventually(t, func() bool {
		for _, a := range m.alerts.Active() {
			if a.Rule == fxmonitor.AlertCheckDegraded && a.Labels["check"] == "nats" {
				return a.State == alert.Resolved
			}
		}
		return false
	}, "the alert resolves")
}

// The nats check's criticality follows the bus: critical with the memory
// bus (a NATS outage fails every publish), not with the outbox (the outbox
// absorbs it); MARTY_MONITOR_CHECKS_NATS_CRITICAL overrides either way.
func TestNATSCheckCriticalityFollowsTheBus(t *testing.T) {
	tg := newTarget(t, startServer(t, t.TempDir(), 0).ClientURL())
	db := dbEnv(t)
	for _, tc := range []struct {
		name string
		env  []string
		want bool
	}{
		{"memory bus", nil, true},
		{"outbox bus", []string{"MARTY_EVENTS_BUS=outbox"}, false},
		{"memory bus, overridden", []string{"MARTY_MONITOR_CHECKS_NATS_CRITICAL=false"}, false},
		{"outbox bus, overridden", []string{"MARTY_EVENTS_BUS=outbox", "MARTY_MONITOR_CHECKS_NATS_CRITICAL=true"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMonitoredApp(t, "orders", tg.env(append(append([]string{}, db...), tc.env...)...))
			for _, r := range m.health.Results() {
				if r.Name == "nats" {
					require.Equal(t, tc.want, r.Critical)
					return
				}
			}
			t.Fatal("no nats check")
		})
	}
}
