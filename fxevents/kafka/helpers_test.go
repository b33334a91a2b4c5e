package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/fx"
	"go.uber.org/goleak"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/kafka"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
	martytest "github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/fxtracing"
	"github.com/martyfx/martyfx/internal/metrictest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// database/sql's opener lives as long as a *sql.DB closed late.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
	)
}

// cluster is an in-process Kafka (kfake) for one test, closed at cleanup,
// with a switch that cuts every client off it.
type cluster struct {
	*kfake.Cluster
	cut atomic.Bool
	// refused counts the produce requests refused while cut.
	refused atomic.Int64
}

func newCluster(t *testing.T, opts ...kfake.Opt) *cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(c.Close)
	kc := &cluster{Cluster: c}
	return kc
}

func (c *cluster) brokers() string { return strings.Join(c.ListenAddrs(), ",") }

// outage cuts the cluster off (every request closes its connection, as a
// broker that went away) and returns the function that restores it, once
// a produce request met the outage (the events really waited). The control
// function drops itself on the first request after the restore, leaving
// kfake as it was.
func (c *cluster) outage(t *testing.T) func() {
	before := c.refused.Load()
	c.cut.Store(true)
	c.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		if !c.cut.Load() {
			c.DropControl()
			return nil, nil, false
		}
		c.KeepControl()
		if req.Key() == int16(kmsg.Produce) {
			c.refused.Add(1)
		}
		return nil, errors.New("cut"), true
	})
	return func() {
		eventually(t, func() bool { return c.refused.Load() > before }, "a produce request meets the outage")
		c.cut.Store(false)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// env is the MARTY_KAFKA_* of a test on c with a topic prefix of its own.
func (c *cluster) env(prefix string, extra ...string) []string {
	return append([]string{
		"MARTY_KAFKA_BROKERS=" + c.brokers(), "MARTY_KAFKA_TOPIC_PREFIX=" + prefix, "MARTY_KAFKA_PARTITIONS=4",
		"MARTY_KAFKA_REPLICATION_FACTOR=1", "MARTY_KAFKA_SESSION_TIMEOUT=6s", "MARTY_KAFKA_REBALANCE_TIMEOUT=10s",
		"MARTY_KAFKA_PUBLISH_TIMEOUT=3s",
	}, extra...)
}

// client is a bare franz-go client on c, closed at cleanup.
func (c *cluster) client(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// consumeAll reads topic from the start until n records came.
func (c *cluster) consumeAll(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := c.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "waiting for %d records of %s (have %d)", n, topic, len(out))
		out = append(out, f.Records()...)
	}
	return out
}

func eventually(t *testing.T, cond func() bool, msg string, args ...any) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, append([]any{msg}, args...)...)
}

// received records what a handler got.
type received struct {
	mu   sync.Mutex
	byID map[string]int
	seqs []int
	at   []time.Time
}

func newReceived() *received { return &received{byID: map[string]int{}} }

func (r *received) add(id string, seq int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byID[id]++
	r.seqs = append(r.seqs, seq)
	r.at = append(r.at, time.Now())
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

// OrderPlaced is the test event.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Seq     int    `json:"seq"`
}

func (OrderPlaced) EventType() string     { return "orders.placed" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }

// testApp is an app under test on the kafka transport.
type testApp struct {
	*martytest.App
	bus    fxevents.Bus
	disp   *fxevents.Dispatcher
	conn   *kafka.Conn
	reg    prometheus.Gatherer
	checks []fxmonitor.Check
}

// newApp starts an app of service with kafka.Module and env (stopped at
// cleanup).
func newApp(t *testing.T, service string, env []string, opts ...fx.Option) *testApp {
	t.Helper()
	ta := &testApp{}
	all := []fx.Option{
		martytest.WithModules(fxcore.Module, fxtracing.Module, fxevents.Module, kafka.Module),
		martytest.Env(append([]string{"MARTY_SERVICE_NAME=" + service, "MARTY_EVENTS_SYNC=false", "MARTY_LOG_LEVEL=info"}, env...)...),
		martytest.WaitTimeout(30 * time.Second),
		fx.Populate(&ta.bus, &ta.disp, &ta.conn, &ta.reg),
		fx.Invoke(fx.Annotate(func(checks []fxmonitor.Check) { ta.checks = checks },
			fx.ParamTags(`group:"martyfx.monitor.checks"`))),
	}
	ta.App = martytest.New(t, append(all, opts...)...)
	return ta
}

// recordingHandler registers a handler named name that records OrderPlaced.
func recordingHandler(name string, r *received) fx.Option {
	return fxevents.AsHandler(fxevents.HandlerFunc(name, func(ctx context.Context, e OrderPlaced) error {
		r.add(fxevents.CorrelationID(ctx), e.Seq)
		return nil
	}))
}

func (ta *testApp) check(t *testing.T, name string) fxmonitor.Check {
	t.Helper()
	for _, c := range ta.checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q", name)
	return fxmonitor.Check{}
}

func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metrictest.Value(t, g, name, labels)
}

// recordingHandlerFunc registers fn as the OrderPlaced handler name.
func recordingHandlerFunc(name string, fn func(context.Context, OrderPlaced) error) fx.Option {
	return fxevents.AsHandler(fxevents.HandlerFunc(name, fn))
}

func fxrepoModule() fx.Option { return fxrepo.Module }
