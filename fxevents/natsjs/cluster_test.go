package natsjs_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/internal/nettest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// EnvNATSServer names a nats-server binary for the cluster test (default
// /usr/sbin/nats-server, else nats-server on the PATH).
const EnvNATSServer = "MARTY_TEST_NATS_SERVER"

// clusterNode is one nats-server process of a test cluster.
type clusterNode struct {
	name      string
	port, rte int
	dir, log  string
	bin       string
	args      []string
	cmd       *exec.Cmd
	exited    chan struct{}
}

// run starts (or restarts, on the same ports and store) the node's process
// and waits until it accepts connections.
func (n *clusterNode) run(t *testing.T) {
	t.Helper()
	n.cmd = exec.Command(n.bin, n.args...)
	n.exited = make(chan struct{})
	require.NoError(t, n.cmd.Start(), "start %s", n.bin)
	cmd, exited := n.cmd, n.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+itoa(n.port), time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, "%s accepts connections", n.name)
}

// kill ends the process with SIGKILL: no goodbye to the cluster.
func (n *clusterNode) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGKILL))
	<-n.exited
}

func (n *clusterNode) url() string { return "nats://127.0.0.1:" + itoa(n.port) }

// natsServerBinary finds the nats-server binary or skips the test.
func natsServerBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv(EnvNATSServer); bin != "" {
		return bin
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server"
	}
	if bin, err := exec.LookPath("nats-server"); err == nil {
		return bin
	}
	t.Skipf("no nats-server binary (/usr/sbin/nats-server, the PATH, or %s): skipping the JetStream cluster test", EnvNATSServer)
	return ""
}

// startCluster runs three nats-server processes with JetStream on loopback
// ports, routed to each other as cluster "martyfx-test", and waits until
// JetStream has a meta leader. Cleanup kills what is left.
func startCluster(t *testing.T) []*clusterNode {
	t.Helper()
	bin := natsServerBinary(t)
	base := t.TempDir()
	nodes := make([]*clusterNode, 3)
	var routes []string
	for i := range nodes {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), port: nettest.FreePort(t), rte: nettest.FreePort(t), bin: bin}
		n.dir = filepath.Join(base, n.name)
		n.log = filepath.Join(base, n.name+".log")
		routes = append(routes, "nats://127.0.0.1:"+itoa(n.rte))
		nodes[i] = n
	}
	for _, n := range nodes {
		n.args = []string{"-a", "127.0.0.1", "-p", itoa(n.port), "--server_name", n.name,
			"-js", "-sd", n.dir, "--cluster_name", "martyfx-test", "--cluster", "nats://127.0.0.1:" + itoa(n.rte),
			"--routes", strings.Join(routes, ","), "-l", n.log}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			if n.cmd != nil {
				_ = n.cmd.Process.Kill()
				<-n.exited
			}
		}
		if t.Failed() {
			for _, n := range nodes {
				if b, err := os.ReadFile(n.log); err == nil {
					lines := strings.Split(strings.TrimSpace(string(b)), "\n")
					t.Logf("%s log (last lines):\n%s", n.name, strings.Join(lines[max(0, len(lines)-30):], "\n"))
				}
			}
		}
	})
	for _, n := range nodes {
		n.run(t)
	}
	nc, js := clusterClient(t, nodes)
	defer nc.Close()
	// A meta leader is not enough: a stream of 3 replicas also needs every
	// peer known to it ("no suitable peers for placement" otherwise).
	probe := "PROBE_" + randHex(4)
	eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: probe, Subjects: []string{probe}, Replicas: 3,
			Storage: jetstream.MemoryStorage})
		return err == nil && js.DeleteStream(ctx, probe) == nil
	}, "the JetStream cluster elects a meta leader and knows its 3 peers")
	return nodes
}

func clusterURLs(nodes []*clusterNode) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url()
	}
	return strings.Join(urls, ",")
}

// clusterClient connects to any node of the cluster (the caller closes nc).
func clusterClient(t *testing.T, nodes []*clusterNode) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(clusterURLs(nodes), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return nc, js
}

// Issue 18, item 8: events survive the loss of a broker node. A three-node
// JetStream cluster holds the stream with 3 replicas; while the outbox
// relays 5,000 events of 50 aggregates, the stream leader is killed with
// SIGKILL. A new leader takes over, the relay resends what lost its PubAck
// (deduplicated by message id), the consumer keeps going on the new leader,
// and the inbox makes every event take effect exactly once.
func TestClusterStreamLeaderKilledMidStream(t *testing.T) {
	dsn := pgtest.NewDatabase(t) // skips without MARTY_TEST_POSTGRES_DSN
	nodes := startCluster(t)
	const (
		total      = 5000
		aggregates = 50
		perTx      = 50
	)
	id := randHex(5)
	stream, prefix := "T_"+id, "t"+id
	ta := newDBApp(t, "orders", []string{
		"MARTY_NATS_URL=" + clusterURLs(nodes), "MARTY_NATS_STREAM=" + stream, "MARTY_NATS_SUBJECT_PREFIX=" + prefix,
		"MARTY_NATS_REPLICAS=3", "MARTY_NATS_RECONNECT_WAIT=50ms", "MARTY_NATS_RECONNECT_MAX=500ms",
		"MARTY_NATS_PUBLISH_TIMEOUT=5s", "MARTY_NATS_ACK_WAIT=5s",
		"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=100ms", "MARTY_EVENTS_WORKERS=8",
		"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn, "MARTY_LOG_LEVEL=error",
	}, fxevents.AsHandler(effectHandler))
	require.NoError(t, ta.db.Exec("CREATE TABLE effects (seq INTEGER NOT NULL)").Error)

	nc, js := clusterClient(t, nodes)
	defer nc.Close()
	info := func() *jetstream.StreamInfo {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return nil
		}
		si, err := st.Info(ctx)
		if err != nil {
			return nil
		}
		return si
	}
	si := info()
	require.NotNil(t, si)
	require.Equal(t, 3, si.Config.Replicas, "MARTY_NATS_REPLICAS=3")
	effects := func() (rows, distinct int64) {
		require.NoError(t, ta.db.Raw("SELECT COUNT(*), COUNT(DISTINCT seq) FROM effects").Row().Scan(&rows, &distinct))
		return rows, distinct
	}

	published := make(chan error, 1)
	var accepted atomic.Int64
	go func() {
		ctx := context.Background()
		for tx := range total / perTx {
			time.Sleep(20 * time.Millisecond) // spread the writes so the relay is busy at the kill
			err := ta.uow.Do(ctx, func(ctx context.Context) error {
				evs := make([]fxevents.Event, perTx)
				for i := range evs {
					seq := tx*perTx + i
					evs[i] = OrderPlaced{OrderID: fmt.Sprintf("agg-%02d", seq%aggregates), Seq: seq}
				}
				return ta.bus.Publish(ctx, evs...)
			})
			if err != nil {
				published <- err
				return
			}
			accepted.Add(perTx)
		}
		published <- nil
	}()

	// Mid-stream: the stream leader dies without a goodbye.
	// Killed once a fifth is in the stream, while the relay (paced by the
	// writer) is still publishing: waiting on the handler's effects instead
	// let a loaded machine publish everything first.
	eventually(t, func() bool { si := info(); return si != nil && si.State.Msgs >= total/5 }, "events flow before the kill")
	si = info()
	require.NotNil(t, si)
	require.NotNil(t, si.Cluster)
	leader := si.Cluster.Leader
	var victim *clusterNode
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	require.NotNil(t, victim, "stream leader %q is one of the nodes", leader)
	connectedTo := ta.conn.NATS().ConnectedServerName()
	victim.kill(t)
	atKill, _ := effects()
	inOutbox := accepted.Load()
	t.Logf("killed stream leader %s (the app was connected to %s) with %d events in the stream, %d accepted by the outbox, %d taken effect",
		leader, connectedTo, si.State.Msgs, inOutbox, atKill)
	require.Less(t, si.State.Msgs, uint64(total), "the relay was still publishing at the kill")

	require.NoError(t, <-published, "the outbox accepts every event")
	eventually(t, func() bool {
		si := info()
		return si != nil && si.Cluster != nil && si.Cluster.Leader != "" && si.Cluster.Leader != leader
	}, "a new stream leader is elected")
	require.Eventually(t, func() bool { n, _ := effects(); return n >= total }, 45*time.Second, 50*time.Millisecond,
		"every event takes effect after the kill")
	time.Sleep(300 * time.Millisecond) // a duplicate would land now
	rows, distinct := effects()
	require.Equal(t, int64(total), rows, "each event took effect exactly once")
	require.Equal(t, int64(total), distinct)
	require.Less(t, atKill, int64(total), "the consumer kept going after the kill")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	jc, err := js.Consumer(ctx, stream, natsjs.ConsumerName("orders", "mailer"))
	require.NoError(t, err)
	ci, err := jc.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, ci.Cluster)
	require.NotEqual(t, leader, ci.Cluster.Leader, "the consumer runs on a live node")
	require.Zero(t, ci.NumAckPending, "nothing left unacknowledged")
	require.Zero(t, ci.NumPending)

	var left, dead int64
	eventually(t, func() bool {
		return ta.db.Raw("SELECT COUNT(*) FROM marty_outbox WHERE delivered_at IS NULL").Scan(&left).Error == nil && left == 0
	}, "the outbox drains")
	require.NoError(t, ta.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
	require.Zero(t, dead, "nothing dead-lettered by the node loss")
	si = info()
	require.NotNil(t, si)
	require.Equal(t, uint64(total), si.State.Msgs, "the stream holds every event once (resends deduplicated by message id)")
	t.Logf("new stream leader %s; stream holds %d messages", si.Cluster.Leader, si.State.Msgs)
}

// Two of the three nodes die: the stream has no quorum and cannot take a
// write, although the app stays connected to the survivor. Publishes fail
// with "no response from stream", which the outbox relay takes as the
// broker being unavailable: the events wait in the outbox, no attempt is
// counted and nothing is dead-lettered (MARTY_EVENTS_MAX_ATTEMPTS=2 would
// otherwise dead-letter within seconds). Once the nodes are back every event
// takes effect once.
func TestClusterQuorumLossKeepsEventsInTheOutbox(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	nodes := startCluster(t)
	id := randHex(5)
	stream := "T_" + id
	ta := newDBApp(t, "orders", []string{
		"MARTY_NATS_URL=" + clusterURLs(nodes), "MARTY_NATS_STREAM=" + stream, "MARTY_NATS_SUBJECT_PREFIX=t" + id,
		"MARTY_NATS_REPLICAS=3", "MARTY_NATS_RECONNECT_WAIT=50ms", "MARTY_NATS_RECONNECT_MAX=500ms",
		"MARTY_NATS_PUBLISH_TIMEOUT=1s", "MARTY_NATS_ACK_WAIT=5s",
		"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=100ms", "MARTY_EVENTS_MAX_ATTEMPTS=2",
		"MARTY_EVENTS_BACKOFF_INITIAL=50ms", "MARTY_EVENTS_BACKOFF_MAX=200ms",
		"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn, "MARTY_LOG_LEVEL=error",
	}, fxevents.AsHandler(effectHandler))
	require.NoError(t, ta.db.Exec("CREATE TABLE effects (seq INTEGER NOT NULL)").Error)
	effects := func() (rows, distinct int64) {
		require.NoError(t, ta.db.Raw("SELECT COUNT(*), COUNT(DISTINCT seq) FROM effects").Row().Scan(&rows, &distinct))
		return rows, distinct
	}
	publish := func(from, to int) {
		require.NoError(t, ta.uow.Do(context.Background(), func(ctx context.Context) error {
			for seq := from; seq < to; seq++ {
				if err := ta.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("agg-%d", seq%10), Seq: seq}); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	publish(0, 100)
	eventually(t, func() bool { n, _ := effects(); return n == 100 }, "events flow with the whole cluster")

	// Keep the node the app is connected to; kill the two others.
	survivor := ta.conn.NATS().ConnectedServerName()
	var killed []*clusterNode
	for _, n := range nodes {
		if n.name != survivor {
			n.kill(t)
			killed = append(killed, n)
		}
	}
	publish(100, 300)
	// The outage: several publish timeouts, well past what two attempts take.
	time.Sleep(6 * time.Second)
	var pending, failed, dead int64
	require.NoError(t, ta.db.Raw("SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM marty_outbox WHERE delivered_at IS NULL").Row().Scan(&pending, &failed))
	require.NoError(t, ta.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
	require.Equal(t, int64(200), pending, "the events of the outage wait in the outbox")
	require.Zero(t, failed, "no attempt is counted while the stream cannot answer")
	require.Zero(t, dead, "nothing dead-lettered")
	require.Zero(t, metric(t, ta.reg, "marty_outbox_failed_total", nil))

	for _, n := range killed {
		n.run(t)
	}
	eventually(t, func() bool { n, _ := effects(); return n >= 300 }, "every event takes effect once the quorum is back")
	time.Sleep(300 * time.Millisecond) // a duplicate would land now
	rows, distinct := effects()
	require.Equal(t, int64(300), rows, "each event took effect exactly once")
	require.Equal(t, int64(300), distinct)
	require.NoError(t, ta.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
	require.Zero(t, dead)
}
