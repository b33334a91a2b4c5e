package natsjs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxevents"
)

// ErrNotStarted is returned by Publish before Start or after Close.
var ErrNotStarted = errors.New("natsjs: not connected (Start not called, or closed)")

// Conn is the JetStream connection of an app: it starts the embedded server
// when configured, connects (reconnecting forever with backoff), ensures the
// stream, and is the fxevents.Transport (Publish).
type Conn struct {
	cfg  Config
	name string
	log  *zap.Logger
	m    *metrics

	mu        sync.Mutex
	nc        *nats.Conn
	js        jetstream.JetStream
	srv       *server.Server
	tmpDir    string
	url       string        // redacted, for errors
	up        chan struct{} // closed while connected
	downSince time.Time
	lastErr   error

	stopping chan struct{}
	stopOnce sync.Once
}

// NewConn returns a Conn for cfg; name is the connection name shown by the
// server (the service name). It registers the marty_nats_* metrics on reg
// (nil for none). Call Start to connect.
func NewConn(cfg Config, name string, log *zap.Logger, reg prometheus.Registerer) (*Conn, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c := &Conn{cfg: cfg, name: name, log: log.Named("nats"), up: make(chan struct{}), stopping: make(chan struct{})}
	m, err := newMetrics(reg, c.connectedValue)
	if err != nil {
		return nil, fmt.Errorf("natsjs: register metrics: %w", err)
	}
	c.m = m
	return c, nil
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

// Server returns the embedded server, or nil.
func (c *Conn) Server() *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srv
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
		dir := c.cfg.StoreDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "martyfx-nats-*"); err != nil {
				return fmt.Errorf("natsjs: embedded server store: %w", err)
			}
			c.tmpDir = dir
		}
		srv, err := RunServer(ServerOptions{StoreDir: dir, Port: c.cfg.EmbeddedPort, Log: c.log})
		if err != nil {
			c.removeTmp()
			return err
		}
		c.srv = srv
		url = srv.ClientURL()
		c.log.Info("embedded nats-server started", zap.String("url", url), zap.String("store_dir", dir))
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
		jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return fmt.Errorf("natsjs: JetStream on %s: %w", c.url, err)
	}
	if err := c.ensureStream(ctx, js); err != nil {
		nc.Close()
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
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			c.mu.Lock()
			c.markDownLocked(err)
			c.mu.Unlock()
			c.log.Warn("disconnected from NATS; reconnecting", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			c.m.reconnects.Inc()
			c.mu.Lock()
			c.markUpLocked()
			c.mu.Unlock()
			c.log.Info("reconnected to NATS", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			c.mu.Lock()
			c.markDownLocked(nats.ErrConnectionClosed)
			c.mu.Unlock()
		}),
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
	if c.cfg.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.cfg.TLS.CAFile))
	}
	if c.cfg.TLS.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.cfg.TLS.CertFile, c.cfg.TLS.KeyFile))
	}
	return opts, nil
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

// Close flushes and closes the connection, then stops the embedded server.
func (c *Conn) Close(ctx context.Context) error {
	c.BeginStop()
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	var err error
	if nc != nil && !nc.IsClosed() {
		if nc.IsConnected() {
			if ferr := nc.FlushWithContext(ctx); ferr != nil && ctx.Err() == nil {
				err = fmt.Errorf("natsjs: flush: %w", ferr)
			}
		}
		nc.Close()
	}
	c.shutdownServer()
	return err
}

func (c *Conn) shutdownServer() {
	c.mu.Lock()
	srv := c.srv
	c.srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	c.removeTmp()
}

func (c *Conn) removeTmp() {
	if c.tmpDir != "" {
		_ = os.RemoveAll(c.tmpDir)
		c.tmpDir = ""
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
		return fmt.Errorf("natsjs: disconnected from %s for %s (grace %s): %v", c.url, down.Round(time.Millisecond), c.cfg.ReadinessGrace, c.lastErr)
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
