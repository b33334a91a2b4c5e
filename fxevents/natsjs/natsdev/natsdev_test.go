package natsdev_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunServerAcceptsConnectionsOnLoopback(t *testing.T) {
	t.Parallel()
	s, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: t.TempDir(), Logger: zap.NewNop()})
	require.NoError(t, err)
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	require.True(t, strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:"), s.ClientURL())
	require.True(t, s.JetStreamEnabled())
	nc, err := nats.Connect(s.ClientURL())
	require.NoError(t, err)
	nc.Close()
}

func TestRunServerFailsClearly(t *testing.T) {
	t.Parallel()
	_, err := natsdev.RunServer(natsdev.ServerOptions{})
	require.ErrorContains(t, err, "natsdev: embedded server: a store directory is required")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = natsdev.RunServer(natsdev.ServerOptions{StoreDir: t.TempDir(), Port: port})
	require.ErrorContains(t, err, fmt.Sprintf("natsdev: embedded server: listen on 127.0.0.1:%d", port))
}

// Embedded without a store directory uses a temporary one and removes it
// when stopped; with one, it keeps it.
func TestEmbeddedStoreDirectory(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // os.MkdirTemp's directory; not parallel
	url, stop, err := natsdev.Embedded(context.Background(), natsjs.DefaultConfig(), nil)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(url, "nats://127.0.0.1:"), url)
	made, err := filepath.Glob(filepath.Join(tmp, "martyfx-nats-*"))
	require.NoError(t, err)
	require.Len(t, made, 1)
	stop()
	require.NoDirExists(t, made[0])

	cfg := natsjs.DefaultConfig()
	cfg.StoreDir = filepath.Join(t.TempDir(), "js")
	_, stop, err = natsdev.Embedded(context.Background(), cfg, nil)
	require.NoError(t, err)
	stop()
	_, err = os.Stat(filepath.Join(cfg.StoreDir, "jetstream"))
	require.NoError(t, err, "a configured store directory is kept")
}

func ExampleRunServer() {
	dir, _ := os.MkdirTemp("", "example-nats-*")
	defer func() { _ = os.RemoveAll(dir) }()
	s, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	fmt.Println(strings.HasPrefix(s.ClientURL(), "nats://127.0.0.1:"), s.JetStreamEnabled())
	// Output: true true
}

// TestRunForTest: a JetStream server for the test, on loopback, stopped at
// cleanup (goleak checks the latter).
func TestRunForTest(t *testing.T) {
	t.Parallel()
	url := natsdev.RunForTest(t)
	require.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, url)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err, "JetStream is enabled")
	ack, err := js.Publish(ctx, "t.x", []byte("hi"))
	require.NoError(t, err)
	require.Equal(t, "T", ack.Stream)
}
