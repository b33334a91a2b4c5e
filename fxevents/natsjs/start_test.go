package natsjs_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/internal/nettest"
)

func TestBadConfigNamesTheVariable(t *testing.T) {
	cases := []struct {
		env  []string
		want string
	}{
		{[]string{"MARTY_NATS_STORAGE=disk"}, `MARTY_NATS_STORAGE="disk": want one of "file", "memory"`},
		{[]string{"MARTY_NATS_URL=http://127.0.0.1:4222"}, `MARTY_NATS_URL="http://127.0.0.1:4222"`},
		{[]string{"MARTY_NATS_URL="}, `MARTY_NATS_URL=""`},
		{[]string{"MARTY_NATS_FETCH_BATCH=0"}, `MARTY_NATS_FETCH_BATCH=0: want a positive integer`},
		{[]string{"MARTY_NATS_ACK_WAIT=-1s"}, `MARTY_NATS_ACK_WAIT="-1s": want a positive duration`},
		{[]string{"MARTY_NATS_BACKOFF=1s,soon"}, `MARTY_NATS_BACKOFF`},
		{[]string{"MARTY_NATS_SUBJECT_PREFIX=events.*"}, `MARTY_NATS_SUBJECT_PREFIX="events.*"`},
		{[]string{"MARTY_NATS_STREAM=my.stream"}, `MARTY_NATS_STREAM="my.stream"`},
		{[]string{"MARTY_NATS_REPLICAS=7"}, `MARTY_NATS_REPLICAS=7: want 1 to 5`},
		{[]string{"MARTY_NATS_TLS_CERT_FILE=/tmp/c.pem"}, `MARTY_NATS_TLS_KEY_FILE (default)="": want a key file, since tls.cert_file is set`},
		{[]string{"MARTY_NATS_TLS_CA_FILE=/tmp/ca.pem", "MARTY_NATS_TLS_INSECURE_SKIP_VERIFY=true"}, `MARTY_NATS_TLS_INSECURE_SKIP_VERIFY=true: want false when tls.ca_file is set`},
		{[]string{"MARTY_NATS_DUPLICATE_WINDOW=2h", "MARTY_NATS_MAX_AGE=1h"}, `MARTY_NATS_DUPLICATE_WINDOW="2h0m0s": want at most max_age (1h0m0s)`},
		{[]string{"MARTY_NATS_MAX_DELIVERIES=9", "MARTY_EVENTS_MAX_ATTEMPTS=5"}, `MARTY_NATS_MAX_DELIVERIES=9 is more than MARTY_EVENTS_MAX_ATTEMPTS=5`},
	}
	for _, c := range cases {
		t.Run(c.env[0], func(t *testing.T) {
			_, opts := appOptions(t, "orders", c.env, recordingHandler("mailer", newReceived()))
			err := fx.New(opts...).Err()
			require.Error(t, err)
			require.Contains(t, err.Error(), c.want)
		})
	}
}

func TestUnreachableNATSFailsStartWithTheAddress(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(nettest.FreePort(t))
	_, opts := appOptions(t, "orders", []string{"MARTY_NATS_URL=nats://" + addr, "MARTY_NATS_CONNECT_TIMEOUT=500ms"})
	app := fx.New(opts...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := app.Start(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "natsjs: connect to nats://"+addr)
	_ = app.Stop(ctx)
}

func TestEmbeddedPortInUseFailsStart(t *testing.T) {
	srv := startServer(t, t.TempDir(), 0)
	port := srv.Addr().(interface{ String() string }).String()
	_, opts := appOptions(t, "orders", []string{"MARTY_NATS_EMBEDDED=true", "MARTY_NATS_EMBEDDED_PORT=" + port[len("127.0.0.1:"):]})
	app := fx.New(opts...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := app.Start(ctx)
	require.ErrorContains(t, err, "natsdev: embedded server: listen on "+port)
	_ = app.Stop(ctx)
}

// An existing stream is updated when JetStream allows it, and a setting it
// cannot change is a start error naming the variable.
func TestExistingStreamIsUpdatedOrRefusedClearly(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		js := tg.js(t)
		ctx := context.Background()
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: tg.stream, Subjects: []string{tg.prefix + ".>"},
			Storage: jetstream.FileStorage, MaxAge: time.Hour, Duplicates: time.Minute})
		require.NoError(t, err)

		newApp(t, "orders", tg.env("MARTY_NATS_MAX_AGE=2h", "MARTY_NATS_DUPLICATE_WINDOW=90s"))
		st, err := js.Stream(ctx, tg.stream)
		require.NoError(t, err)
		require.Equal(t, 2*time.Hour, st.CachedInfo().Config.MaxAge)
		require.Equal(t, 90*time.Second, st.CachedInfo().Config.Duplicates)

		_, opts := appOptions(t, "orders", tg.env("MARTY_NATS_STORAGE=memory"))
		app := fx.New(opts...)
		require.NoError(t, app.Err())
		err = app.Start(ctx)
		require.ErrorContains(t, err, "natsjs: stream "+tg.stream)
		require.ErrorContains(t, err, "has file storage but MARTY_NATS_STORAGE=memory")
		_ = app.Stop(ctx)
	})
}

// With the memory bus (publishing goes to NATS directly) the readiness check
// is critical; it fails once the connection has been down longer than the
// grace period and recovers with the connection.
func TestReadinessCheckFailsAfterTheGracePeriod(t *testing.T) {
	dir, port := t.TempDir(), nettest.FreePort(t)
	srv := startServer(t, dir, port)
	tg := newTarget(t, srv.ClientURL())
	ta := newApp(t, "orders", tg.env("MARTY_NATS_READINESS_GRACE=700ms"))
	var check func(context.Context) error
	for _, c := range ta.checks {
		if c.Name == "nats" {
			require.True(t, c.Critical)
			check = c.Func
		}
	}
	require.NotNil(t, check)
	ctx := context.Background()
	require.NoError(t, check(ctx))
	srv.Shutdown()
	srv.WaitForShutdown()
	eventually(t, func() bool { return metric(t, ta.reg, "marty_nats_connected", nil) == 0 }, "disconnected")
	require.NoError(t, check(ctx), "within the grace period")
	eventually(t, func() bool { return check(ctx) != nil }, "failing after the grace period")
	require.ErrorContains(t, check(ctx), "natsjs: disconnected from nats://127.0.0.1:"+strconv.Itoa(port))
	startServer(t, dir, port)
	eventually(t, func() bool { return check(ctx) == nil }, "ready again after the reconnection")
	_ = natsjs.ErrNotStarted
}
