package rabbitmq_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	martytest "github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/nettest"
)

// privateBroker is a RabbitMQ node of the test's own, on free ports with
// its data in a temp dir, so that the test may stop and start it (the
// shared server is never stopped).
type privateBroker struct {
	node, url string
	cmd       *exec.Cmd
}

// startPrivateBroker starts a node; it needs rabbitmq-server and
// rabbitmqctl on PATH and the right to run them (root here: the server
// script runs the node as the rabbitmq user, which must own the data dir).
func startPrivateBroker(t *testing.T) *privateBroker {
	t.Helper()
	martytest.Integration(t, martytest.NeedRabbitMQ)
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		t.Skip("no rabbitmq-server on PATH to start a private node")
	}
	dir, err := os.MkdirTemp("", "marty-rabbit-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	port, dist := nettest.FreePort(t), nettest.FreePort(t)
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", port)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plugins"), []byte("[].\n"), 0o644))
	if u, err := user.Lookup("rabbitmq"); err == nil {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Chown(p, uid, gid)
		}))
	}
	b := &privateBroker{node: "marty-" + randHex(6) + "@localhost", url: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)}
	b.cmd = exec.Command("rabbitmq-server")
	b.cmd.Env = append(os.Environ(),
		"RABBITMQ_NODENAME="+b.node,
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(dist),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "plugins"),
		"RABBITMQ_FEATURE_FLAGS_FILE="+filepath.Join(dir, "feature_flags"),
	)
	require.NoError(t, b.cmd.Start())
	t.Cleanup(func() {
		_ = b.ctl("stop")
		done := make(chan struct{})
		go func() { _ = b.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = b.cmd.Process.Kill()
			<-done
		}
	})
	// rabbitmqctl cannot reach the node until it has registered with epmd.
	for deadline := time.Now().Add(90 * time.Second); ; {
		err := b.ctl("await_startup")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the private node did not start: %v", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.waitAMQP(t)
	return b
}

// ctl runs rabbitmqctl against the node.
func (b *privateBroker) ctl(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-n", b.node}, args...)...).CombinedOutput()
	if err != nil {
		return &ctlError{args: args, out: string(out), err: err}
	}
	return nil
}

func (b *privateBroker) waitAMQP(t *testing.T) {
	t.Helper()
	addr := rabbitmqHost(b.url)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 90*time.Second, 100*time.Millisecond, "AMQP listens on %s", addr)
}

// The broker application restarts under load (rabbitmqctl stop_app, then
// start_app, on a node of the test's own): the outbox keeps the events
// published meanwhile, both apps reconnect, and every event takes effect
// exactly once, in order per aggregate, with nothing dead-lettered.
func TestBrokerRestartUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	b := startPrivateBroker(t)
	tg := target{url: b.url}
	pub := newDBApp(t, "orders", tg.env(append([]string{"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_POLL_INTERVAL=100ms"}, dbEnv(t)...)...))
	var handled atomic.Int32
	got := newReceived()
	cons := effectsApp(t, "notifier", tg.env(dbEnv(t)...), got, &handled)

	const n = 300
	var published atomic.Int32
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := pub.uow.Do(context.Background(), func(ctx context.Context) error {
				return pub.bus.Publish(ctx, OrderPlaced{OrderID: fmt.Sprintf("o%d", i%7), Seq: i})
			}); err != nil {
				done <- err
				return
			}
			published.Add(1)
			time.Sleep(10 * time.Millisecond) // a steady flow of writes, across the restart
		}
		done <- nil
	}()
	eventually(t, func() bool { return handled.Load() >= 30 }, "events flow before the restart")
	require.NoError(t, b.ctl("stop_app"))
	during := published.Load()
	eventually(t, func() bool { return published.Load() >= during+20 || published.Load() == n },
		"the outbox accepts writes while the broker is stopped")
	require.NoError(t, b.ctl("start_app"))
	b.waitAMQP(t)
	require.NoError(t, <-done)

	eventually(t, func() bool { r, _ := countEffects(t, cons.db); return r >= n }, "every event takes effect after the restart")
	rows, distinct := countEffects(t, cons.db)
	require.Equal(t, int64(n), rows, "each effect once")
	require.Equal(t, int64(n), distinct)
	requireOrdered(t, got)
	var left, dead int64
	eventually(t, func() bool {
		return pub.db.Raw("SELECT COUNT(*) FROM marty_outbox").Scan(&left).Error == nil && left == 0
	}, "the outbox drains")
	require.NoError(t, pub.db.Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error)
	require.Zero(t, dead, "nothing dead-lettered by the restart")
	// A consumer that had everything before the stop reconnects after the
	// last effect: wait for it rather than read the counter at once.
	eventually(t, func() bool {
		return metric(t, pub.reg, "marty_rabbitmq_reconnects_total", nil) >= 1 &&
			metric(t, cons.reg, "marty_rabbitmq_reconnects_total", nil) >= 1
	}, "both apps reconnect after the restart")
}
