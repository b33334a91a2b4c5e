package rabbitmq_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/rabbitmq"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
	martytest "github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/metrictest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// OrderPlaced is the test event.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (OrderPlaced) EventType() string     { return "orders.placed" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// target is a vhost of its own on the test server (created with
// rabbitmqctl, deleted at cleanup with everything in it).
type target struct {
	url, vhost string
}

// newTarget needs the server at MARTY_TEST_RABBITMQ_URL and rabbitmqctl
// with access to its Erlang cookie (root, or the rabbitmq user).
func newTarget(t *testing.T) target {
	t.Helper()
	martytest.Integration(t, martytest.NeedRabbitMQ)
	base := os.Getenv(martytest.EnvRabbitMQURL)
	u, err := url.Parse(base)
	require.NoError(t, err)
	vhost := "marty-test-" + randHex(6)
	ctl := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
		if err != nil {
			return &ctlError{args: args, out: string(out), err: err}
		}
		return nil
	}
	if err := ctl("add_vhost", vhost); err != nil {
		t.Skipf("these tests give each test a vhost of its own with rabbitmqctl, which failed here (run as root or as the rabbitmq user): %v", err)
	}
	t.Cleanup(func() {
		if err := ctl("delete_vhost", vhost); err != nil {
			t.Logf("delete vhost %s: %v", vhost, err)
		}
	})
	user := "guest"
	if u.User != nil {
		user = u.User.Username()
	}
	require.NoError(t, ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*"))
	u.Path = "/" + vhost
	return target{url: u.String(), vhost: vhost}
}

type ctlError struct {
	args []string
	out  string
	err  error
}

func (e *ctlError) Error() string {
	return "rabbitmqctl " + e.args[0] + ": " + e.err.Error() + ": " + e.out
}

func (tg target) env(extra ...string) []string {
	return append([]string{
		"MARTY_RABBITMQ_URL=" + tg.url, "MARTY_RABBITMQ_RECONNECT_WAIT=50ms", "MARTY_RABBITMQ_RECONNECT_MAX=500ms", "MARTY_LOG_LEVEL=error",
		"MARTY_RABBITMQ_HEARTBEAT=2s",
	}, extra...)
}

// amqpConn opens a plain client connection on the target.
func (tg target) amqpConn(t *testing.T) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(tg.url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testApp is an app under test and what the tests look at.
type testApp struct {
	app    *fxtest.App
	bus    fxevents.Bus
	disp   *fxevents.Dispatcher
	reg    *prometheus.Registry
	conn   *rabbitmq.Conn
	spans  *tracetest.SpanRecorder
	checks []fxmonitor.Check
	db     *gorm.DB
	uow    fxrepo.UnitOfWork
}

func appOptions(t *testing.T, service string, env []string, opts ...fx.Option) (*testApp, []fx.Option) {
	t.Helper()
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_SERVICE_NAME=" + service}, env...))
	require.NoError(t, err)
	ta := &testApp{spans: tracetest.NewSpanRecorder()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ta.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	all := []fx.Option{
		fx.NopLogger,
		fxcore.Module,
		fxevents.Module,
		rabbitmq.Module,
		fx.Replace(src),
		fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))),
		fx.Populate(&ta.bus, &ta.disp, &ta.reg, &ta.conn),
		fx.Invoke(fx.Annotate(func(checks []fxmonitor.Check) { ta.checks = checks },
			fx.ParamTags(`group:"martyfx.monitor.checks"`))),
	}
	return ta, append(all, opts...)
}

// newApp builds and starts an app, stopped at cleanup.
func newApp(t *testing.T, service string, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	ta, all := appOptions(t, service, env, opts...)
	ta.app = fxtest.New(t, all...)
	require.NoError(t, ta.app.Err())
	ta.app.RequireStart()
	t.Cleanup(func() { ta.stop() })
	return ta
}

// newDBApp is newApp with fxrepo.Module on env's database.
func newDBApp(t *testing.T, service string, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	ta, all := appOptions(t, service, env, opts...)
	all = append(all, fxrepo.Module, fx.Populate(&ta.db, &ta.uow))
	ta.app = fxtest.New(t, all...)
	require.NoError(t, ta.app.Err())
	ta.app.RequireStart()
	t.Cleanup(func() { ta.stop() })
	return ta
}

func (ta *testApp) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = ta.app.Stop(ctx)
}

// dbEnv is the MARTY_DB_* of a fresh database: Postgres when
// MARTY_TEST_POSTGRES_DSN is set, else a SQLite file.
func dbEnv(t *testing.T) []string {
	t.Helper()
	if os.Getenv(pgtest.EnvDSN) != "" {
		return []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + pgtest.NewDatabase(t)}
	}
	return []string{"MARTY_DB_DSN=file:" + filepath.Join(t.TempDir(), "events.db"), "MARTY_DB_BUSY_TIMEOUT=10s"}
}

// received records what a handler got.
type received struct {
	mu    sync.Mutex
	byID  map[string]int
	seqs  []int
	byAgg map[string][]int
}

func newReceived() *received { return &received{byID: map[string]int{}, byAgg: map[string][]int{}} }

func (r *received) add(id, agg string, seq int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[id]++
	r.seqs = append(r.seqs, seq)
	r.byAgg[agg] = append(r.byAgg[agg], seq)
}

func (r *received) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

func recordingHandler(name string, r *received) fx.Option {
	return fxevents.AsHandler(fxevents.HandlerFunc(name, func(ctx context.Context, e OrderPlaced) error {
		r.add(fxevents.CorrelationID(ctx), e.OrderID, e.Seq)
		return nil
	}))
}

func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metrictest.Value(t, g, name, labels)
}

func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, append([]any{msg}, args...)...)
}

// proxy is a TCP proxy in front of the server that a test cuts (closing
// every connection and refusing new ones) and restores.
type proxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{target: target, addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = struct{}{}, struct{}{}
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			p.wg.Go(func() { pipe(s, c) })
			p.wg.Go(func() { pipe(c, s) })
		}
	})
}

// cut closes the listener and every proxied connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// restore listens again on the same address.
func (p *proxy) restore(t *testing.T) {
	t.Helper()
	var ln net.Listener
	require.Eventually(t, func() bool {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "listen again on %s", p.addr)
	p.serve(ln)
}

// url is tg's URL through the proxy.
func (p *proxy) url(t *testing.T, tg target) string {
	t.Helper()
	u, err := url.Parse(tg.url)
	require.NoError(t, err)
	u.Host = p.addr
	return u.String()
}

// rabbitmqHost is the host:port of an amqp URL (5672 by default).
func rabbitmqHost(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "5672")
	}
	return u.Host
}
