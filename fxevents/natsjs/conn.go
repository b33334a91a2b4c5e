package natsjs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// ErrNotStarted is returned by Publish before Start or after Close. It
// matches fxevents.ErrTransportUnavailable (errors.Is), so a client whose
// request published meanwhile is told to retry (503 / UNAVAILABLE).
var ErrNotStarted = fmt.Errorf("natsjs: not connected (Start not called, or closed): %w", fxevents.ErrTransportUnavailable)

// EmbeddedServer starts the in-process NATS server that Config.Embedded
// (MARTY_NATS_EMBEDDED=true) asks for, on Config.EmbeddedPort and storing
// in Config.StoreDir, and returns its client URL and a function that stops
// it. natsjs links no server itself, so a service that talks to a real NATS
// does not carry one: package fxevents/natsjs/natsdev provides it
// (natsdev.Module with Fx, natsdev.Embedded without).
type EmbeddedServer func(ctx context.Context, cfg Config, log *zap.Logger) (url string, stop func(), err error)

// ConnOptions are what NewConn takes besides the Config; the zero value
// works.
type ConnOptions struct {
	// Logger receives the connection's logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Info names the connection as the server shows it:
	// "<Info.Name>/<Info.InstanceID>". Zero value: the binary's name.
	Info fxcore.ServiceInfo
	// Registerer receives the marty_nats_* metrics; nil: they are not
	// registered.
	Registerer prometheus.Registerer
	// Stopping is the app's stop sequence: once it begins, a Publish
	// waiting for a lost connection gives up. Nil: a private one, begun
	// by Close.
	Stopping *fxcore.Stopping
	// Fatal is called when the connection closes by itself after Start
	// (the client gave up: the server refused the credentials twice, or
	// someone closed Conn.NATS()), since events can no longer flow; nil:
	// the error is only logged. Close never calls it.
	Fatal func(error)
	// EmbeddedServer starts the server Config.Embedded asks for (see
	// EmbeddedServer); required with Embedded, unused otherwise.
	EmbeddedServer EmbeddedServer
}

// Conn is the JetStream connection of an app: it starts the embedded server
// when configured, connects (reconnecting forever with backoff), ensures the
// stream, and is the fxevents.Transport (Publish).
type Conn struct {
	cfg      Config
	name     string
	log      *zap.Logger
	m        *metrics
	fatal    func(error)
	embedded EmbeddedServer

	mu         sync.Mutex
	nc         *nats.Conn
	js         jetstream.JetStream
	stopServer func()        // stops the embedded server; nil without one
	url        string        // redacted, for errors
	up         chan struct{} // closed while connected
	downSince  time.Time
	lastErr    error

	// pend maps each message sent with PublishMsgAsync and not settled
	// yet to its publishOnce window (see transport.go).
	pendMu sync.Mutex
	pend   map[*nats.Msg]pending

	stopping   chan struct{}
	stopOnce   sync.Once
	deliberate atomic.Bool // set before Conn closes its connection itself
}

// NewConn validates cfg and returns a Conn for it. It registers the
// marty_nats_* metrics on opts.Registerer. Call Start to connect and Close
// to disconnect.
func NewConn(cfg Config, opts ConnOptions) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("natsjs: %w", err)
	}
	if cfg.Embedded && opts.EmbeddedServer == nil {
		return nil, errors.New("natsjs: MARTY_NATS_EMBEDDED=true needs the embedded server, which natsjs does not link: " +
			"add natsdev.Module (package github.com/martyfx/martyfx/fxevents/natsjs/natsdev) to the app, " +
			"or set MARTY_NATS_URL to a running NATS server")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry() // registered nowhere
	}
	name := opts.Info.Name
	if name == "" {
		name = binaryName()
	}
	if opts.Info.InstanceID != "" {
		name += "/" + opts.Info.InstanceID
	}
	c := &Conn{cfg: cfg, name: name, log: opts.Logger.Named("nats"), fatal: opts.Fatal, embedded: opts.EmbeddedServer,
		up: make(chan struct{}), stopping: make(chan struct{}), pend: map[*nats.Msg]pending{}}
	m, err := newMetrics(opts.Registerer, c.connectedValue)
	if err != nil {
		return nil, fmt.Errorf("natsjs: register metrics: %w", err)
	}
	c.m = m
	if opts.Stopping != nil {
		opts.Stopping.OnBegin(c.BeginStop)
	}
	return c, nil
}

// publishWindow is how many published messages may wait for their PubAck
// at once, over every Publish call of the connection; a publish past it
// waits for a free place (nats.go's PublishAsyncMaxPending).
const publishWindow = 4096

// binaryName is the running program's name, the connection's name when
// ConnOptions.Info has none.
func binaryName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		name := filepath.Base(os.Args[0])
		return strings.TrimSuffix(name, filepath.Ext(name))
	}
	return "martyfx"
}

// Config returns the configuration.
func (c *Conn) Config() Config { return c.cfg }

// NATS returns the connection (nil before Start).
func (c *Conn) NATS() *nats.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nc
}

// JetStream returns the JetStream context (nil before Start).
func (c *Conn) JetStream() jetstream.JetStream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.js
}

// Subject returns the subject events of eventType are published on.
func (c *Conn) Subject(eventType string) string { return c.cfg.SubjectPrefix + "." + eventType }

func (c *Conn) connectedValue() float64 {
	if nc := c.NATS(); nc != nil && nc.IsConnected() {
		return 1
	}
	return 0
}

// Start starts the embedded server (with Embedded), connects and ensures
// the stream. An unreachable server fails with its address.
func (c *Conn) Start(ctx context.Context) (err error) {
	url := c.cfg.URL
	if c.cfg.Embedded {
		var stop func()
		url, stop, err = c.embedded(ctx, c.cfg, c.log)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.stopServer = stop
		c.mu.Unlock()
		c.log.Info("embedded nats-server started", zap.String("url", url))
	}
	defer func() {
		if err != nil {
			c.shutdownServer()
		}
	}()
	c.url = redactURLs(url)
	opts, err := c.options()
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return fmt.Errorf("natsjs: connect to %s: %w", c.url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(c.cfg.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(publishWindow),
		jetstream.WithPublishAsyncAckHandler(c.acked), jetstream.WithPublishAsyncErrHandler(c.ackFailed))
	if err != nil {
		c.closeDeliberately(nc)
		return fmt.Errorf("natsjs: JetStream on %s: %w", c.url, err)
	}
	if err := c.ensureStream(ctx, js); err != nil {
		c.closeDeliberately(nc)
		return err
	}
	c.mu.Lock()
	c.nc, c.js = nc, js
	if nc.IsConnected() {
		c.markUpLocked()
	}
	c.mu.Unlock()
	c.log.Info("connected to NATS JetStream", zap.String("url", nc.ConnectedUrlRedacted()),
		zap.String("stream", c.cfg.Stream), zap.String("subjects", c.cfg.SubjectPrefix+".>"))
	return nil
}

func (c *Conn) options() ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(c.name),
		nats.Timeout(c.cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(c.reconnectDelay),
		nats.DisconnectErrHandler(c.disconnected),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.m.reconnects.Inc()
			c.mu.Lock()
			c.markUpLocked()
			c.mu.Unlock()
			c.log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ClosedHandler(c.closed),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			c.log.Warn("NATS async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
	if c.cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.cfg.CredsFile))
	}
	if c.cfg.NKeySeedFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.cfg.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("natsjs: nkey seed file %s (MARTY_NATS_NKEY_SEED_FILE): %w", c.cfg.NKeySeedFile, err)
		}
		opts = append(opts, o)
	}
	tc, err := c.cfg.TLS.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("natsjs: TLS (MARTY_NATS_TLS_*): %w", err)
	}
	if tc != nil {
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// disconnected runs when the connection drops. nats.go calls it for a
// deliberate Close too, and while the app stops a lost server is expected
// (a development server stopping with its process, say): neither is a
// warning, and neither reconnects.
func (c *Conn) disconnected(nc *nats.Conn, err error) {
	c.mu.Lock()
	c.markDownLocked(err)
	c.mu.Unlock()
	if nc.IsClosed() || c.isStopping() {
		c.log.Debug("disconnected from NATS while stopping", zap.Error(err))
		return
	}
	c.log.Warn("disconnected from NATS; reconnecting", zap.Error(err))
}

// closed runs once the connection is closed for good: by Close (a clean
// stop, logged at debug level), or by the client giving up before the app
// stops, which is fatal: no event can flow any more.
func (c *Conn) closed(nc *nats.Conn) {
	c.mu.Lock()
	cause := c.lastErr
	c.markDownLocked(nats.ErrConnectionClosed)
	c.mu.Unlock()
	if err := nc.LastError(); err != nil {
		cause = err
	}
	if cause == nil {
		cause = nats.ErrConnectionClosed
	}
	if c.isStopping() {
		c.log.Debug("NATS connection closed")
		return
	}
	err := fmt.Errorf("natsjs: the connection to %s closed and will not reconnect: %w", c.url, cause)
	if c.fatal == nil {
		c.log.Error("NATS connection closed; events cannot be published or consumed any more", zap.Error(err))
		return
	}
	c.fatal(err)
}

// closeDeliberately closes nc, which the close handlers then know was
// meant: no warning, no Fatal.
func (c *Conn) closeDeliberately(nc *nats.Conn) {
	c.deliberate.Store(true)
	nc.Close()
}

// isStopping reports whether the app is stopping or the connection was
// closed on purpose.
func (c *Conn) isStopping() bool {
	if c.deliberate.Load() {
		return true
	}
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// reconnectDelay is ReconnectWait doubled per attempt up to ReconnectMax,
// with ±20% jitter.
func (c *Conn) reconnectDelay(attempts int) time.Duration {
	d := c.cfg.ReconnectWait
	for i := 1; i < attempts && d < c.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.ReconnectMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (c *Conn) markUpLocked() {
	select {
	case <-c.up:
	default:
		close(c.up)
	}
	c.downSince = time.Time{}
	c.lastErr = nil
}

func (c *Conn) markDownLocked(err error) {
	select {
	case <-c.up:
		c.up = make(chan struct{})
	default:
	}
	if c.downSince.IsZero() {
		c.downSince = time.Now()
	}
	if err != nil {
		c.lastErr = err
	}
}

// waitConnected returns once connected, or an error when ctx ends, the app
// stops or the connection is closed.
func (c *Conn) waitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		nc, up := c.nc, c.up
		c.mu.Unlock()
		if nc == nil || nc.IsClosed() {
			return ErrNotStarted
		}
		if nc.IsConnected() {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond) // the status callbacks are asynchronous
		select {
		case <-up:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("natsjs: waiting for the connection to %s: %w: %w", c.url, fxevents.ErrTransportUnavailable, ctx.Err())
		case <-c.stopping:
			t.Stop()
			return fmt.Errorf("natsjs: not connected to %s and the app is stopping: %w", c.url, fxevents.ErrTransportUnavailable)
		}
		t.Stop()
	}
}

// BeginStop makes waits for a lost connection give up (the app is
// stopping); Publish then fails at once while disconnected.
func (c *Conn) BeginStop() { c.stopOnce.Do(func() { close(c.stopping) }) }

// Close flushes (within ctx, or PublishTimeout when ctx has no deadline)
// and closes the connection, then stops the embedded server.
func (c *Conn) Close(ctx context.Context) error {
	c.BeginStop()
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	var err error
	if nc != nil && !nc.IsClosed() {
		if nc.IsConnected() {
			if _, ok := ctx.Deadline(); !ok { // nats.go's flush needs one
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.cfg.PublishTimeout)
				defer cancel()
			}
			if ferr := nc.FlushWithContext(ctx); ferr != nil && ctx.Err() == nil {
				err = fmt.Errorf("natsjs: flush: %w", ferr)
			}
		}
		c.closeDeliberately(nc)
	}
	c.shutdownServer()
	return err
}

func (c *Conn) shutdownServer() {
	c.mu.Lock()
	stop := c.stopServer
	c.stopServer = nil
	c.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// health is the readiness check: failing once the connection has been
// down longer than ReadinessGrace.
func (c *Conn) health(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nc == nil {
		return ErrNotStarted
	}
	if c.nc.IsConnected() {
		return nil
	}
	since := c.downSince
	if since.IsZero() {
		since = time.Now()
	}
	if down := time.Since(since); down >= c.cfg.ReadinessGrace {
		msg := fmt.Sprintf("natsjs: disconnected from %s for %s (grace %s)", c.url, down.Round(time.Millisecond), c.cfg.ReadinessGrace)
		if c.lastErr == nil { // a disconnect nats.go gave no reason for
			return errors.New(msg)
		}
		return fmt.Errorf("%s: %w", msg, c.lastErr)
	}
	return nil
}

// ensureStream creates the stream, or updates it when its settings differ
// and the server allows it; otherwise it fails saying what differs.
func (c *Conn) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	storage := jetstream.FileStorage
	if c.cfg.Storage == StorageMemory {
		storage = jetstream.MemoryStorage
	}
	subject := c.cfg.SubjectPrefix + ".>"
	want := jetstream.StreamConfig{
		Name:        c.cfg.Stream,
		Description: "martyfx events",
		Subjects:    []string{subject},
		Storage:     storage,
		Replicas:    c.cfg.Replicas,
		MaxAge:      c.cfg.MaxAge,
		Duplicates:  c.cfg.DuplicateWindow,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
	}
	st, err := js.Stream(ctx, c.cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if _, err := js.CreateStream(ctx, want); err != nil {
			return fmt.Errorf("natsjs: create stream %s (subjects %s) on %s: %w", c.cfg.Stream, subject, c.url, err)
		}
		c.log.Info("created JetStream stream", zap.String("stream", c.cfg.Stream), zap.String("subjects", subject))
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("natsjs: JetStream is not enabled on %s (start nats-server with -js): %w", c.url, err)
	case err != nil:
		return fmt.Errorf("natsjs: look up stream %s on %s: %w", c.cfg.Stream, c.url, err)
	}
	have := st.CachedInfo().Config
	if have.Storage != storage {
		return fmt.Errorf("natsjs: stream %s on %s has %s storage but MARTY_NATS_STORAGE=%s, which JetStream cannot change: delete the stream or set MARTY_NATS_STORAGE=%s",
			c.cfg.Stream, c.url, storageName(have.Storage), c.cfg.Storage, storageName(have.Storage))
	}
	upd := have
	var diffs []string
	if !slices.Contains(have.Subjects, subject) {
		upd.Subjects = append(slices.Clone(have.Subjects), subject)
		diffs = append(diffs, fmt.Sprintf("subjects %v lack %s", have.Subjects, subject))
	}
	if have.Replicas != c.cfg.Replicas {
		upd.Replicas = c.cfg.Replicas
		diffs = append(diffs, fmt.Sprintf("replicas %d -> %d", have.Replicas, c.cfg.Replicas))
	}
	if have.MaxAge != c.cfg.MaxAge {
		upd.MaxAge = c.cfg.MaxAge
		diffs = append(diffs, fmt.Sprintf("max age %s -> %s", have.MaxAge, c.cfg.MaxAge))
	}
	if have.Duplicates != c.cfg.DuplicateWindow {
		upd.Duplicates = c.cfg.DuplicateWindow
		diffs = append(diffs, fmt.Sprintf("duplicate window %s -> %s", have.Duplicates, c.cfg.DuplicateWindow))
	}
	if len(diffs) == 0 {
		return nil
	}
	if _, err := js.UpdateStream(ctx, upd); err != nil {
		return fmt.Errorf("natsjs: stream %s on %s differs from the configuration (%s) and the server refused the update: %w; align MARTY_NATS_* with the stream or delete it",
			c.cfg.Stream, c.url, strings.Join(diffs, ", "), err)
	}
	c.log.Info("updated JetStream stream", zap.String("stream", c.cfg.Stream), zap.Strings("changes", diffs))
	return nil
}

func storageName(s jetstream.StorageType) string {
	if s == jetstream.MemoryStorage {
		return StorageMemory
	}
	return StorageFile
}
