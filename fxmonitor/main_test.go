package fxmonitor_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxmonitor/health"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// harness is a started app with fxcore, fxhttp (public and admin servers on
// loopback) and fxmonitor, logging into an observer.
type harness struct {
	t        *testing.T
	app      *fx.App
	srv      *fxhttp.Server
	health   *health.Health
	breakers *breaker.Breakers
	alerts   *alert.Evaluator
	stopping *fxcore.Stopping
	logs     *observer.ObservedLogs
	client   *http.Client
	stopped  atomic.Bool // the test stopped the app itself
}

// quiet turns off the built-in checks, whose verdict depends on the machine.
var quiet = []string{
	"MARTY_MONITOR_DISK_ENABLED=false", "MARTY_MONITOR_MEMORY_ENABLED=false", "MARTY_MONITOR_BREAKER_CHECK=false",
}

func newApp(t *testing.T, env []string, opts ...fx.Option) (*harness, error) {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_SERVICE_NAME=orders",
	}, env...))
	require.NoError(t, err)
	h := &harness{t: t}
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	all := append([]fx.Option{
		fxcore.Module, fxhttp.Module, fxmonitor.Module, fx.NopLogger, fx.Replace(src),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fx.Populate(&h.srv, &h.health, &h.breakers, &h.alerts, &h.stopping),
	}, opts...)
	h.app = fx.New(all...)
	if err := h.app.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.app.Start(ctx); err != nil {
		return nil, err
	}
	tr := &http.Transport{}
	h.client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if h.stopped.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, h.app.Stop(ctx))
	})
	return h, nil
}

func start(t *testing.T, env []string, opts ...fx.Option) *harness {
	t.Helper()
	h, err := newApp(t, env, opts...)
	require.NoError(t, err)
	return h
}

func (h *harness) admin(path string) string { return "http://" + h.srv.AdminAddr() + path }

// get fetches an admin path and returns the status code and body.
func (h *harness) get(path string, hdr ...string) (int, string, http.Header) {
	h.t.Helper()
	return fetch(h.t, h.client, h.admin(path), hdr...)
}

func fetch(t *testing.T, c *http.Client, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

// scrape reads /metrics over HTTP and parses the text format.
func (h *harness) scrape() map[string]*dto.MetricFamily {
	h.t.Helper()
	code, body, _ := h.get("/metrics")
	require.Equal(h.t, http.StatusOK, code)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	require.NoError(h.t, err)
	return mfs
}

// value returns the value of the series of name whose labels include want;
// ok is false when there is none.
func value(mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// messages counts the log entries with msg whose string field key is val.
func (h *harness) messages(msg, key, val string) int {
	n := 0
	for _, e := range h.logs.FilterMessage(msg).All() {
		if key == "" || e.ContextMap()[key] == val {
			n++
		}
	}
	return n
}
