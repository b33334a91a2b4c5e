// Package dashboard drives the fxmonitor operations dashboard in a real
// headless Chromium (Debian's chromium package, .ci/install-chromium) against
// the example's orders service (martyfx.Modules + service.Module) with the
// transactional outbox on SQLite and an extra event handler that fails until
// it is fixed, so a dead letter appears.
package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/example/events"
	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const adminToken = "dashboard-test-admin-token"

// mailer fails while broken, like a handler whose SMTP server is down.
type mailer struct {
	broken  atomic.Bool
	handled atomic.Int64
}

type app struct {
	fx     *fx.App
	http   *fxhttp.Server
	grpc   *fxgrpc.Server
	health *health.Health
	mail   *mailer
}

func startApp(t *testing.T) *app {
	t.Helper()
	dir := t.TempDir()
	src, err := fxcore.NewSourceFrom("", []string{
		"MARTY_SERVICE_NAME=orders", "MARTY_SERVICE_VERSION=1.4.2", "MARTY_ENV=development",
		"OTEL_TRACES_EXPORTER=none",
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_TOKEN=" + adminToken,
		"MARTY_HTTP_ACCESS_LOG=off", "MARTY_GRPC_ADDR=127.0.0.1:0",
		"MARTY_DB_DRIVER=sqlite", "MARTY_DB_DSN=" + filepath.Join(dir, "orders.db"),
		"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_MAX_ATTEMPTS=1", "MARTY_EVENTS_POLL_INTERVAL=200ms",
		"MARTY_MONITOR_DASHBOARD_INTERVAL=500ms",
		"MARTY_MONITOR_DISK_PATH=" + dir,
	})
	require.NoError(t, err)
	a := &app{mail: &mailer{}}
	a.mail.broken.Store(true)
	opts := append(slices.Clone(martyfx.Modules),
		fx.Replace(src),
		// The app's logs go to the test's log, errors only (the dead letter is one).
		fx.Decorate(func() *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)) }),
		service.Module,
		fxevents.AsHandler(func() fxevents.Handler {
			return fxevents.HandlerFunc("mailer", func(_ context.Context, e events.OrderCreated) error {
				if a.mail.broken.Load() {
					return errors.New("smtp 127.0.0.1:25: connection refused")
				}
				a.mail.handled.Add(1)
				return nil
			})
		}),
		fx.Populate(&a.http, &a.grpc, &a.health),
	)
	a.fx = fx.New(opts...)
	require.NoError(t, a.fx.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, a.fx.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		require.NoError(t, a.fx.Stop(ctx))
	})
	return a
}

// traffic places an order over gRPC (its OrderCreated event is what the
// broken mailer dead-letters), reads it back, asks for unknown orders
// (NOT_FOUND) and reads the summary route over HTTP.
func traffic(t *testing.T, a *app) {
	t.Helper()
	conn, err := grpc.NewClient(a.grpc.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	client := ordersv1.NewOrderServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	order, err := client.CreateOrder(ctx, &ordersv1.CreateOrderRequest{CustomerId: "c-1",
		Items: []*ordersv1.LineItem{{Sku: "book", Quantity: 2, UnitPriceCents: 1250}}})
	require.NoError(t, err)
	for range 15 {
		_, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: order.GetId()})
		require.NoError(t, err)
	}
	for range 4 {
		_, err := client.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: "01a00000-0000-7000-8000-000000000000"})
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	}

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	for range 20 {
		resp, err := c.Get("http://" + a.http.Addr() + "/v1/summary")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
}

func chromiumPath() string {
	if p := os.Getenv("MARTY_CHROMIUM"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

func artifactsDir(t *testing.T) string {
	dir := os.Getenv("MARTY_ARTIFACTS_DIR")
	if dir == "" {
		return t.TempDir()
	}
	if !filepath.IsAbs(dir) {
		// Relative to the repository root (the tests run in tests/dashboard).
		dir = filepath.Join("..", "..", dir)
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// consoleLog collects the page's console errors, exceptions and browser
// log errors.
type consoleLog struct {
	mu   sync.Mutex
	errs []string
	all  []string
}

func (l *consoleLog) add(m chromedp.ConsoleMessage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	line := fmt.Sprintf("[%s] %s (%s:%d)", m.Type, m.String(), m.URL, m.Line)
	l.all = append(l.all, line)
	if m.IsException() || m.Type == "error" || m.Type == "assert" {
		l.errs = append(l.errs, line)
	}
}

func (l *consoleLog) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func TestDashboardInChromium(t *testing.T) {
	chromium := chromiumPath()
	if chromium == "" {
		t.Skip("chromium is not installed: run .ci/install-chromium (apt-get install chromium) to run the dashboard's browser test")
	}
	a := startApp(t)
	traffic(t, a)
	admin := "http://" + a.http.AdminAddr()

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelCtx()
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelTimeout()

	// Start the browser, then subscribe to the console before the page loads.
	require.NoError(t, chromedp.Do(ctx))
	console := &consoleLog{}
	msgs := chromedp.Console(ctx)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for m, err := range msgs {
			if err != nil {
				return
			}
			console.add(m)
		}
	}()
	defer func() { cancelTimeout(); cancelCtx(); <-readDone }()

	poll := func(what, expr string) {
		t.Helper()
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond),
			chromedp.WithPollingTimeout(60*time.Second)))
		if err != nil {
			dump, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({panels: (window.martyDashboard && martyDashboard.state() || {}).panels, body: document.querySelector("main").innerText.slice(0, 3000)})`))
			t.Fatalf("waiting for %s: %v\nconsole: %v\npage: %s", what, err, console.all, dump)
		}
	}
	eval := func(expr string, out any) {
		t.Helper()
		raw, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr))
		require.NoError(t, err, expr)
		require.NoError(t, json.Unmarshal(raw, out), string(raw))
	}

	// The admin token: opened once with ?token=, the page lives on its cookie.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(admin+"/dashboard/?token="+adminToken)))
	var loc string
	eval(`location.pathname + location.search`, &loc)
	require.Equal(t, "/dashboard/", loc, "the token left the address bar")
	poll("live updates", `document.getElementById("conn").textContent === "live"`)

	// Health: the table lists the app's checks.
	var want []string
	for _, r := range a.health.Results() {
		want = append(want, r.Name)
	}
	require.NotEmpty(t, want)
	poll("health rows", fmt.Sprintf(`document.querySelectorAll("#health-table tbody tr").length === %d`, len(want)))
	var got []string
	eval(`Array.from(document.querySelectorAll("#health-table tbody tr")).map(tr => tr.dataset.check)`, &got)
	require.ElementsMatch(t, want, got)
	require.Contains(t, got, "events", "fxevents' readiness check")
	require.Len(t, want, len(got))

	// RED: the route and the methods have charts with drawn lines. The page
	// computes rates over a few samples; each chart counts the pixels of its
	// request-rate stroke (#2563eb) on the canvas.
	drawn := func(sel string) string {
		return fmt.Sprintf(`(() => {
			const card = document.querySelector(%q);
			if (!card || Number(card.dataset.points) < 2) return false;
			const cv = card.querySelector("canvas");
			if (!cv) return false;
			const d = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
			let n = 0;
			for (let i = 0; i < d.length; i += 4) {
				if (Math.abs(d[i]-37) < 30 && Math.abs(d[i+1]-99) < 30 && Math.abs(d[i+2]-235) < 30 && d[i+3] > 200) n++;
			}
			return n > 20;
		})()`, sel)
	}
	poll("HTTP route chart", drawn(`#http-grid .red-card[data-key="GET /v1/summary"]`))
	poll("gRPC GetOrder chart", drawn(`#grpc-grid .red-card[data-key="/orders.v1.OrderService/GetOrder"]`))
	var nums string
	eval(`document.querySelector('#grpc-grid .red-card[data-key="/orders.v1.OrderService/GetOrder"] .nums').textContent`, &nums)
	require.Contains(t, nums, "errors 21.1 %", "4 of 19 GetOrder calls were NOT_FOUND: %s", nums)
	require.Contains(t, nums, "total 19")

	// fxevents' panel (fxmonitor.AsPanel) shows the dead letter; its re-drive
	// button, which calls fxevents' own admin route, moves it out once the
	// mailer is fixed.
	poll("the dead letter", `document.querySelectorAll("#panel-events table.rows tbody tr").length === 1`)
	var dead struct {
		ID, Text string
	}
	eval(`(() => { const tr = document.querySelector("#panel-events table.rows tbody tr"); return {ID: tr.dataset.id, Text: tr.textContent}; })()`, &dead)
	require.Contains(t, dead.Text, "mailer")
	require.Contains(t, dead.Text, events.TypeOrderCreated)
	require.Contains(t, dead.Text, "connection refused")
	var kind string
	eval(`document.querySelector("#panel-events .panel-sub").textContent`, &kind)
	require.Equal(t, "(transactional outbox)", kind)
	shot(ctx, t, "dashboard-dead-letter.png") // before the re-drive, for the record

	a.mail.broken.Store(false)
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(fmt.Sprintf(`#panel-events table.rows tbody tr[data-id=%q] button.action`, dead.ID))))
	poll("the dead letter to leave", fmt.Sprintf(`!document.querySelector('#panel-events table.rows tbody tr[data-id=%q]') && !document.querySelector("#panel-events .none").hidden`, dead.ID))
	require.Eventually(t, func() bool { return a.mail.handled.Load() == 1 }, 30*time.Second, 50*time.Millisecond,
		"the re-driven event reached the fixed handler")

	// The dependency graph: an SVG with nodes for the app's constructors.
	poll("the graph", `document.querySelectorAll("#graph svg g.node").length > 20`)
	var labels []string
	eval(`Array.from(document.querySelectorAll("#graph svg g.node")).map(n => n.textContent.trim())`, &labels)
	for _, ctor := range []string{"NewMetrics", "NewChanges", "newHealth", "newDashboard", "NewServer", "*fxevents.Dispatcher", "*gorm.DB"} {
		require.True(t, slices.ContainsFunc(labels, func(l string) bool { return strings.Contains(l, ctor) }),
			"graph node %q among %d nodes", ctor, len(labels))
	}

	// Panels with data are shown; breakers (none in this app) hide themselves.
	var hidden map[string]bool
	eval(`Object.fromEntries(Array.from(document.querySelectorAll("section.panel")).map(s => [s.id, s.hidden]))`, &hidden)
	require.Equal(t, map[string]bool{"panel-health": false, "panel-alerts": false, "panel-http": false, "panel-grpc": false,
		"panel-events": false, "panel-cache": false, "panel-breakers": true, "panel-graph": false}, hidden)

	shot(ctx, t, "dashboard.png")
	// A phone: one column, nothing wider than the screen.
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)))
	time.Sleep(500 * time.Millisecond)
	var overflow float64
	eval(`document.documentElement.scrollWidth - document.documentElement.clientWidth`, &overflow)
	require.LessOrEqual(t, overflow, 0.0, "no horizontal scroll on a phone")
	shot(ctx, t, "dashboard-phone.png")

	// The console listener hears the page (so "no errors" means something).
	_, err := chromedp.Run(ctx, chromedp.Evaluate[any](`console.info("dashboardtest: console probe")`))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		console.mu.Lock()
		defer console.mu.Unlock()
		return slices.ContainsFunc(console.all, func(l string) bool { return strings.Contains(l, "console probe") })
	}, 10*time.Second, 20*time.Millisecond)
	require.Empty(t, console.errors(), "the console has no errors")
}

func shot(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	path := filepath.Join(artifactsDir(t), name)
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
}
