package natsjs_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/metrictest"
	"github.com/martyfx/martyfx/internal/pgtest"

	// SQLite, for the tests on the embedded database.
	_ "github.com/martyfx/martyfx/fxrepo/sqlite"
)

// EnvNATS points the tests at an external NATS server with JetStream (CI:
// nats://127.0.0.1:4222); every test also runs on an embedded server.
const EnvNATS = "MARTY_TEST_NATS_URL"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's opener lives as long as a *sql.DB closed late.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		// No nats-server or nats.go ignores are needed: RunServer's
		// Shutdown+WaitForShutdown and Conn.Close end all their goroutines.
	)
}

// OrderPlaced is the test event.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (OrderPlaced) EventType() string     { return "orders.placed" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }

// forEachServer runs fn on an embedded server and, when MARTY_TEST_NATS_URL
// is set, on that server.
func forEachServer(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("embedded", func(t *testing.T) {
		fn(t, startServer(t, t.TempDir(), 0).ClientURL())
	})
	t.Run("external", func(t *testing.T) {
		url := os.Getenv(EnvNATS)
		if url == "" {
			t.Skipf("%s is not set: skipping the run against an external NATS server", EnvNATS)
		}
		fn(t, url)
	})
}

// startServer starts an embedded server the test controls, shut down at
// cleanup.
func startServer(t *testing.T, dir string, port int) *server.Server {
	t.Helper()
	s, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: dir, Port: port})
	require.NoError(t, err)
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// target is a unique stream and subject prefix on a server.
type target struct {
	url, stream, prefix string
}

// newTarget picks a stream and prefix for the test and deletes the stream
// at cleanup.
func newTarget(t *testing.T, url string) target {
	t.Helper()
	id := randHex(5)
	tg := target{url: url, stream: "T_" + id, prefix: "t" + id}
	t.Cleanup(func() {
		nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
		if err != nil {
			return // the server is gone (a test that stopped it)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, tg.stream)
	})
	return tg
}

func (tg target) env(extra ...string) []string {
	return append([]string{
		"MARTY_NATS_URL=" + tg.url, "MARTY_NATS_STREAM=" + tg.stream, "MARTY_NATS_SUBJECT_PREFIX=" + tg.prefix,
		"MARTY_NATS_RECONNECT_WAIT=50ms", "MARTY_NATS_RECONNECT_MAX=500ms", "MARTY_LOG_LEVEL=error",
	}, extra...)
}

// js opens a JetStream client of its own on the target.
func (tg target) js(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(tg.url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

// testApp is an app under test and what the tests look at.
type testApp struct {
	app    *fxtest.App
	bus    fxevents.Bus
	disp   *fxevents.Dispatcher
	reg    *prometheus.Registry
	conn   *natsjs.Conn
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
		natsjs.Module,
		natsdev.Module, // MARTY_NATS_EMBEDDED=true in some tests
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
	t.Cleanup(func() { ta.stop(t) })
	return ta
}

func (ta *testApp) stop(t *testing.T) {
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
	return []string{"MARTY_DB_DSN=file:" + filepath.Join(t.TempDir(), "events.db")}
}

// newDBApp is newApp with fxrepo.Module on env's database.
func newDBApp(t *testing.T, service string, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	ta, all := appOptions(t, service, env, opts...)
	all = append(all, fxrepo.Module, fx.Populate(&ta.db, &ta.uow))
	ta.app = fxtest.New(t, all...)
	require.NoError(t, ta.app.Err())
	ta.app.RequireStart()
	t.Cleanup(func() { ta.stop(t) })
	return ta
}

// received records what a handler got.
type received struct {
	mu    sync.Mutex
	byID  map[string]int
	seqs  []int
	times []time.Time
}

func newReceived() *received { return &received{byID: map[string]int{}} }

func (r *received) add(id string, seq int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[id]++
	r.seqs = append(r.seqs, seq)
	r.times = append(r.times, time.Now())
}

func (r *received) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

func (r *received) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seqs)
}

func (r *received) dupes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.byID {
		n += c - 1
	}
	return n
}

// metric returns the value of a counter or gauge, or a histogram's sample
// count, with exactly these labels (0 when absent).
func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metrictest.Value(t, g, name, labels)
}

func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 20*time.Second, 10*time.Millisecond, append([]any{msg}, args...)...)
}

func itoa(i int) string { return strconv.Itoa(i) }
