package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/natsjs"
	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
	"github.com/martyfx/martyfx/internal/nettest"
	"github.com/martyfx/martyfx/internal/pkitest"
)

// config is a Conn's Config for the target, with quick reconnections.
func (tg target) config() natsjs.Config {
	cfg := natsjs.DefaultConfig()
	cfg.URL, cfg.Stream, cfg.SubjectPrefix = tg.url, tg.stream, tg.prefix
	cfg.ReconnectWait, cfg.ReconnectMax, cfg.ConnectTimeout = 50*time.Millisecond, 500*time.Millisecond, 2*time.Second
	return cfg
}

// fatals records the calls of ConnOptions.Fatal.
type fatals struct {
	mu   sync.Mutex
	errs []error
}

func (f *fatals) fatal(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

func (f *fatals) list() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

// startConn starts a Conn on cfg with an observed debug logger; it is
// closed at cleanup.
func startConn(t *testing.T, cfg natsjs.Config, opts natsjs.ConnOptions) (*natsjs.Conn, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	opts.Logger = zap.New(core)
	c, err := natsjs.NewConn(cfg, opts)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c, logs
}

func warnings(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		if e.Level >= zapcore.WarnLevel {
			out = append(out, e.Level.String()+" "+e.Message)
		}
	}
	return out
}

func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string) {
	t.Helper()
	eventually(t, func() bool { return logs.FilterMessage(msg).Len() > 0 }, "log %q", msg)
}

// A clean stop is not a warning (issue 20): Close used to log "WARN
// disconnected from NATS; reconnecting" through nats.go's disconnect
// callback, which runs on every close. Neither does a server that goes away
// once the app's stop has begun (a development server stopping with its
// process) warn. Fatal is never called.
func TestCleanStopLogsNoWarning(t *testing.T) {
	t.Parallel()
	t.Run("close", func(t *testing.T) {
		t.Parallel()
		tg := newTarget(t, startServer(t, t.TempDir(), 0).ClientURL())
		var f fatals
		c, logs := startConn(t, tg.config(), natsjs.ConnOptions{Fatal: f.fatal})
		require.NoError(t, c.Publish(context.Background(), envelope(t, OrderPlaced{OrderID: "o1"})))
		require.NoError(t, c.Close(context.Background()))
		waitLog(t, logs, "NATS connection closed") // the last of nats.go's close callbacks
		require.Empty(t, warnings(logs))
		require.Zero(t, logs.FilterMessageSnippet("reconnecting").Len())
		require.Empty(t, f.list())
	})
	t.Run("server gone after the stop began", func(t *testing.T) {
		t.Parallel()
		srv := startServer(t, t.TempDir(), 0)
		tg := newTarget(t, srv.ClientURL())
		stopping := fxcore.NewStopping()
		var f fatals
		c, logs := startConn(t, tg.config(), natsjs.ConnOptions{Fatal: f.fatal, Stopping: stopping})
		stopping.Begin()
		srv.Shutdown()
		srv.WaitForShutdown()
		waitLog(t, logs, "disconnected from NATS while stopping")
		require.NoError(t, c.Close(context.Background()))
		waitLog(t, logs, "NATS connection closed")
		require.Empty(t, warnings(logs))
		require.Empty(t, f.list())
	})
}

// A server lost while the app runs is still a warning, and the
// connection comes back.
func TestServerLostWhileRunningWarnsAndReconnects(t *testing.T) {
	t.Parallel()
	dir, port := t.TempDir(), nettest.FreePort(t)
	srv := startServer(t, dir, port)
	tg := newTarget(t, srv.ClientURL())
	var f fatals
	c, logs := startConn(t, tg.config(), natsjs.ConnOptions{Fatal: f.fatal})
	srv.Shutdown()
	srv.WaitForShutdown()
	waitLog(t, logs, "disconnected from NATS; reconnecting")
	require.Equal(t, zapcore.WarnLevel, logs.FilterMessage("disconnected from NATS; reconnecting").All()[0].Level)
	startServer(t, dir, port)
	waitLog(t, logs, "reconnected to NATS")
	require.NoError(t, c.Publish(context.Background(), envelope(t, OrderPlaced{OrderID: "o1"})))
	require.Empty(t, f.list())
}

// A connection that closes by itself after Start (here: someone closed
// Conn.NATS()) can carry no more events: Fatal is called once, naming the
// address; Close afterwards does not call it again.
func TestConnectionClosedByItselfIsFatal(t *testing.T) {
	t.Parallel()
	tg := newTarget(t, startServer(t, t.TempDir(), 0).ClientURL())
	var f fatals
	c, _ := startConn(t, tg.config(), natsjs.ConnOptions{Fatal: f.fatal})
	c.NATS().Close()
	eventually(t, func() bool { return len(f.list()) == 1 }, "Fatal called")
	require.ErrorContains(t, f.list()[0], "natsjs: the connection to "+tg.url+" closed and will not reconnect")
	require.NoError(t, c.Close(context.Background()))
	require.ErrorIs(t, c.Publish(context.Background(), envelope(t, OrderPlaced{})), natsjs.ErrNotStarted)
	require.Len(t, f.list(), 1)
}

// NewConn validates its Config itself, so a program without Fx gets the
// errors the Fx path gives, and refuses Embedded without a server to embed.
func TestNewConnValidatesAndNeedsAnEmbeddedServer(t *testing.T) {
	t.Parallel()
	cfg := natsjs.DefaultConfig()
	cfg.Storage = "disk"
	_, err := natsjs.NewConn(cfg, natsjs.ConnOptions{})
	require.ErrorContains(t, err, `natsjs: invalid storage="disk": want one of "file", "memory"`)

	cfg = natsjs.DefaultConfig()
	cfg.TLS.KeyFile = "/tmp/key.pem"
	_, err = natsjs.NewConn(cfg, natsjs.ConnOptions{})
	require.ErrorContains(t, err, "natsjs: invalid tls.cert_file")

	cfg = natsjs.DefaultConfig()
	cfg.Embedded = true
	_, err = natsjs.NewConn(cfg, natsjs.ConnOptions{})
	require.ErrorContains(t, err, "natsjs: MARTY_NATS_EMBEDDED=true needs the embedded server")
	require.ErrorContains(t, err, "add natsdev.Module")

	c, err := natsjs.NewConn(cfg, natsjs.ConnOptions{EmbeddedServer: natsdev.Embedded, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	require.True(t, strings.HasPrefix(c.NATS().ConnectedUrl(), "nats://127.0.0.1:"))
	require.NoError(t, c.Close(context.Background()))
}

// NewConsumers needs its parts and refuses more deliveries than the
// dispatcher's attempts, like the module.
func TestNewConsumersChecksItsOptions(t *testing.T) {
	t.Parallel()
	_, err := natsjs.NewConsumers(natsjs.ConsumersOptions{})
	require.ErrorContains(t, err, "natsjs: NewConsumers needs a Conn and a Dispatcher")

	c, err := natsjs.NewConn(natsjs.DefaultConfig(), natsjs.ConnOptions{})
	require.NoError(t, err)
	d, err := fxevents.NewDispatcher(fxevents.DefaultConfig(), fxevents.DispatcherOptions{}) // 5 attempts
	require.NoError(t, err)
	_, err = natsjs.NewConsumers(natsjs.ConsumersOptions{Conn: c, Dispatcher: d, MaxDeliveries: 9})
	require.ErrorContains(t, err, "MARTY_NATS_MAX_DELIVERIES=9 is more than MARTY_EVENTS_MAX_ATTEMPTS=5")
	cs, err := natsjs.NewConsumers(natsjs.ConsumersOptions{Conn: c, Dispatcher: d})
	require.NoError(t, err)
	require.NoError(t, cs.Stop(context.Background()))
}

// ErrNotStarted tells a client to retry later, like the outage it is.
func TestErrNotStartedIsUnavailable(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, natsjs.ErrNotStarted, fxevents.ErrTransportUnavailable)
	cl := fxcore.Classify(fmt.Errorf("create order: %w", natsjs.ErrNotStarted))
	require.Equal(t, fxcore.ClassUnavailable, cl.Class)
	require.NotContains(t, cl.Message, "natsjs")
}

// TLS is fxcore.TLS under MARTY_NATS_TLS_*: against a server that requires
// client certificates (mutual TLS, the test CA), the app connects with the
// CA, certificate and key from the environment and events flow; without
// the client certificate, or without the CA, start fails naming the
// address.
func TestMutualTLSFromTheEnvironment(t *testing.T) {
	t.Parallel()
	pki := pkitest.New(t)
	serverTLS, err := fxcore.TLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CA}.ServerConfig()
	require.NoError(t, err)
	srv, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: t.TempDir(), TLS: serverTLS})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	tg := target{url: srv.ClientURL(), stream: "T_" + randHex(5), prefix: "t" + randHex(5)}

	got := newReceived()
	ta := newApp(t, "notifier", tg.env("MARTY_NATS_TLS_CA_FILE="+pki.CA, "MARTY_NATS_TLS_CERT_FILE="+pki.ClientCert,
		"MARTY_NATS_TLS_KEY_FILE="+pki.ClientKey), recordingHandler("mailer", got))
	require.True(t, ta.conn.NATS().TLSRequired())
	require.NoError(t, ta.bus.Publish(context.Background(), OrderPlaced{OrderID: "o1"}))
	eventually(t, func() bool { return got.distinct() == 1 }, "an event goes round over TLS")

	for name, tlsCfg := range map[string]fxcore.TLS{
		"no client certificate": {CAFile: pki.CA},
		"no CA":                 {CertFile: pki.ClientCert, KeyFile: pki.ClientKey},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := tg.config()
			cfg.TLS = tlsCfg
			cfg.ConnectTimeout = time.Second
			c, err := natsjs.NewConn(cfg, natsjs.ConnOptions{})
			require.NoError(t, err)
			err = c.Start(context.Background())
			require.ErrorContains(t, err, "natsjs: connect to "+tg.url)
			require.False(t, errors.Is(err, context.DeadlineExceeded))
			require.NoError(t, c.Close(context.Background()))
		})
	}
}

// envelope is ev's envelope from a bare dispatcher-less encoding.
func envelope(t *testing.T, ev fxevents.Event) fxevents.Envelope {
	t.Helper()
	env, err := fxevents.NewEnvelope("test", ev, fxevents.DefaultCodec())
	require.NoError(t, err)
	return env
}
