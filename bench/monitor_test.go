package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

// monChecks returns n cheap readiness checks. interval > 0 makes them
// background checks.
func monChecks(n int, interval time.Duration) []fxmonitor.Check {
	out := make([]fxmonitor.Check, n)
	for i := range out {
		out[i] = fxmonitor.Check{Name: fmt.Sprintf("check_%02d", i), Kinds: fxmonitor.Readiness, Critical: i%2 == 0,
			Interval: interval, Func: func(context.Context) error { return nil }}
	}
	return out
}

// monWriter is a reusable ResponseWriter: the server's own response costs
// are left out, the handler's are measured.
type monWriter struct {
	hdr  http.Header
	code int
	n    int
}

func (w *monWriter) Header() http.Header         { return w.hdr }
func (w *monWriter) WriteHeader(c int)           { w.code = c }
func (w *monWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }

// monHealth returns a started Health with n checks whose results are cached
// (on-request checks with a 1h TTL, run once here).
func monHealth(b *testing.B, n int, interval time.Duration) *health.Health {
	h, err := health.New(monChecks(n, interval), health.Options{TTL: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	_ = h.Start(context.Background())
	b.Cleanup(func() { _ = h.Stop(context.Background()) })
	deadline := time.Now().Add(5 * time.Second)
	for !h.Healthy(fxmonitor.Readiness) {
		if time.Now().After(deadline) {
			b.Fatal("checks did not pass")
		}
		time.Sleep(time.Millisecond)
	}
	return h
}

// monNaiveReadyz is the hand-rolled readiness handler many services have:
// run every check on each request and answer a JSON map.
func monNaiveReadyz(checks []fxmonitor.Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		status, code := map[string]string{}, http.StatusOK
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), time.Second)
			if err := c.Func(ctx); err != nil {
				status[c.Name], code = err.Error(), http.StatusServiceUnavailable
			} else {
				status[c.Name] = "ok"
			}
			cancel()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(status)
	})
}

func monServe(b *testing.B, h http.Handler, path string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &monWriter{hdr: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code != 0 && w.code != http.StatusOK {
		b.Fatalf("status %d", w.code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}

// BenchmarkReadyz is the handler's server time for /readyz: fxmonitor with
// 1 and 20 cached checks (on-request within the TTL, and background), next
// to a bare "ok" handler and a naive handler that runs the 20 checks each time.
func BenchmarkReadyz(b *testing.B) {
	b.Run("bare-ok", func(b *testing.B) {
		monServe(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }), "/readyz")
	})
	b.Run("naive-20-checks-run-each-time", func(b *testing.B) {
		monServe(b, monNaiveReadyz(monChecks(20, 0)), "/readyz")
	})
	for _, n := range []int{1, 20} {
		b.Run(fmt.Sprintf("fxmonitor-%d-cached-checks", n), func(b *testing.B) {
			monServe(b, monHealth(b, n, 0).ProbeHandler(fxmonitor.Readiness), "/readyz")
		})
	}
	b.Run("fxmonitor-20-background-checks", func(b *testing.B) {
		monServe(b, monHealth(b, 20, time.Hour).ProbeHandler(fxmonitor.Readiness), "/readyz")
	})
	b.Run("fxmonitor-20-cached-checks-verbose-json", func(b *testing.B) {
		monServe(b, monHealth(b, 20, 0).ProbeHandler(fxmonitor.Readiness), "/readyz?verbose")
	})
}

// TestReadyzAllocsPerCheck reports allocations per check on the cached path
// (20 checks minus 1 check): the issue asks for zero.
func TestReadyzAllocsPerCheck(t *testing.T) {
	allocs := map[int]float64{}
	for _, n := range []int{1, 20} {
		h, err := health.New(monChecks(n, 0), health.Options{TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if !h.Healthy(fxmonitor.Readiness) {
			t.Fatal("not healthy")
		}
		ph := h.ProbeHandler(fxmonitor.Readiness)
		req := httptest.NewRequest(http.MethodGet, "/readyz", nil)
		w := &monWriter{hdr: http.Header{}}
		allocs[n] = testing.AllocsPerRun(1000, func() { ph.ServeHTTP(w, req) })
	}
	t.Logf("allocs per /readyz: 1 check %.0f, 20 checks %.0f; per check %.2f", allocs[1], allocs[20], (allocs[20]-allocs[1])/19)
	if allocs[20] != allocs[1] {
		t.Fatalf("cached checks allocate: %v", allocs)
	}
}

// monApp starts fxcore + fxhttp + fxmonitor on loopback with extra options.
func monApp(b *testing.B, opts ...fx.Option) (*fxhttp.Server, prometheus.Gatherer) {
	src, err := fxcore.NewSourceFrom("", []string{
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_LOG_LEVEL=error",
		"MARTY_MONITOR_CHECK_TTL=1h",
	})
	if err != nil {
		b.Fatal(err)
	}
	var (
		srv *fxhttp.Server
		g   prometheus.Gatherer
	)
	app := fx.New(append([]fx.Option{fxcore.Module, fxhttp.Module, fxmonitor.Module, fx.NopLogger, fx.Replace(src),
		fx.Decorate(zap.NewNop), fx.Populate(&srv, &g)}, opts...)...)
	if err := app.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = app.Stop(context.Background()) })
	return srv, g
}

func monLoopback(b *testing.B, url string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	get := func() int {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusOK {
		b.Fatalf("status %d", code)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}

func monPlainServer(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// BenchmarkReadyzLoopback is one client's round trip to /readyz over
// loopback: the admin server of fxhttp with fxmonitor's 20 cached checks,
// next to a bare net/http server answering "ok".
func BenchmarkReadyzLoopback(b *testing.B) {
	b.Run("bare-net-http-ok", func(b *testing.B) {
		addr := monPlainServer(b, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }))
		monLoopback(b, "http://"+addr+"/readyz")
	})
	b.Run("fxmonitor-admin-20-cached-checks", func(b *testing.B) {
		var opts []fx.Option
		for _, c := range monChecks(20, 0) {
			opts = append(opts, fxmonitor.AsCheck(c))
		}
		srv, _ := monApp(b, opts...)
		monLoopback(b, "http://"+srv.AdminAddr()+"/readyz")
	})
}

// BenchmarkScrape is one /metrics scrape served in process: fxmonitor's
// handler over the app's registry with the default collectors (Go, process,
// marty_system_*, health, breakers, alerts) next to bare promhttp over a
// registry with the Go and process collectors only; text and OpenMetrics.
func BenchmarkScrape(b *testing.B) {
	bare := prometheus.NewRegistry()
	bare.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, format := range []struct{ name, accept string }{
		{"text", "text/plain"},
		{"openmetrics", "application/openmetrics-text; version=1.0.0"},
	} {
		b.Run("bare-promhttp-go-process/"+format.name, func(b *testing.B) {
			monScrape(b, promhttp.HandlerFor(bare, promhttp.HandlerOpts{EnableOpenMetrics: true}), format.accept)
		})
		b.Run("fxmonitor-default-collectors/"+format.name, func(b *testing.B) {
			_, g := monApp(b)
			monScrape(b, fxmonitor.MetricsHandler(g, zap.NewNop()), format.accept)
		})
	}
	b.Run("fxmonitor-default-collectors/loopback-admin-server", func(b *testing.B) {
		srv, _ := monApp(b)
		monLoopback(b, "http://"+srv.AdminAddr()+"/metrics")
	})
}

func monScrape(b *testing.B, h http.Handler, accept string) {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", accept)
	w := &monWriter{hdr: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code != 0 && w.code != http.StatusOK {
		b.Fatalf("status %d", w.code)
	}
	size := w.n
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w.hdr = http.Header{}
		h.ServeHTTP(w, req)
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}
