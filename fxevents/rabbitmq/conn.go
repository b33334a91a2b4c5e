package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// ErrNotStarted is returned by Publish before Start or after Close. It
// matches fxevents.ErrTransportUnavailable (errors.Is).
var ErrNotStarted = fmt.Errorf("rabbitmq: not connected (Start not called, or closed): %w", fxevents.ErrTransportUnavailable)

// ConnOptions are what NewConn takes besides the Config; the zero value
// works.
type ConnOptions struct {
	// Logger receives the connection's logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Info names the connection as the broker shows it:
	// "<Info.Name>/<Info.InstanceID>". Zero value: the binary's name.
	Info fxcore.ServiceInfo
	// Registerer receives the marty_rabbitmq_* metrics; nil: they are not
	// registered.
	Registerer prometheus.Registerer
	// Stopping is the app's stop sequence: once it begins, a Publish
	// waiting for a lost connection gives up. Nil: a private one, begun by
	// Close.
	Stopping *fxcore.Stopping
	// Fatal is called when reconnection cannot succeed (the broker refuses
	// the credentials), since events can no longer flow; nil: the error is
	// only logged and reconnection goes on.
	Fatal func(error)
}

// Conn is an app's connection to RabbitMQ: it connects with the client's
// reconnection (forever), declares the exchanges, and is
// the fxevents.Transport (Publish, with publisher confirms).
type Conn struct {
	cfg   Config
	name  string
	host  string // for errors: host:port only
	log   *zap.Logger
	m     *metrics
	fatal func(error)

	mu        sync.Mutex
	conn      *amqp.Connection
	up        chan struct{} // closed while connected
	down      chan struct{} // closed when the connection of this period is lost
	downSince time.Time
	lastErr   error
	pubs      chan *amqp.Channel // confirm-mode publishing channels
	watchDone chan struct{}

	stopping chan struct{}
	stopOnce sync.Once
	closed   atomic.Bool
}

// NewConn validates cfg and returns a Conn for it, registering the
// marty_rabbitmq_* metrics on opts.Registerer. Call Start to connect and
// Close to disconnect.
func NewConn(cfg Config, opts ConnOptions) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("rabbitmq: %w", err)
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
	c := &Conn{cfg: cfg, name: name, host: hostOf(cfg.URL), log: opts.Logger.Named("rabbitmq"), fatal: opts.Fatal,
		up: make(chan struct{}), down: make(chan struct{}), stopping: make(chan struct{})}
	m, err := newMetrics(opts.Registerer, c.connectedValue)
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: register metrics: %w", err)
	}
	c.m = m
	if opts.Stopping != nil {
		opts.Stopping.OnBegin(c.BeginStop)
	}
	return c, nil
}

func binaryName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		name := filepath.Base(os.Args[0])
		return strings.TrimSuffix(name, filepath.Ext(name))
	}
	return "martyfx"
}

// Config returns the configuration.
func (c *Conn) Config() Config { return c.cfg }

// AMQP returns the connection (nil before Start).
func (c *Conn) AMQP() *amqp.Connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// RetryExchange is the headers exchange that routes a failed message to
// its consumer's delay queue.
func (c *Conn) RetryExchange() string { return c.cfg.Exchange + ".retry" }

func (c *Conn) connectedValue() float64 {
	if c.connected() {
		return 1
	}
	return 0
}

func (c *Conn) connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.up:
		return true
	default:
		return false
	}
}

// Start connects (failing with the broker's address when it cannot),
// declares the exchanges and opens the publishing channels. From then on
// a lost connection is reconnected (forever, every ReconnectWait doubling
// up to ReconnectMax) with fresh channels.
func (c *Conn) Start(ctx context.Context) error {
	timeout := c.cfg.ConnectTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	conn, pubs, err := c.dial(timeout)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.conn, c.pubs, c.watchDone = conn, pubs, make(chan struct{})
	c.markUpLocked()
	c.mu.Unlock()
	go c.supervise(conn)
	c.log.Info("connected to RabbitMQ", zap.String("host", c.host), zap.String("exchange", c.cfg.Exchange),
		zap.Int("partitions", c.cfg.Partitions))
	return nil
}

// dial connects, declares the exchanges and opens the publishing channels.
//
// The client's own recovery (amqp091-go Config.Recovery) is not used: with
// a dozen channels on a connection, its channel and connection recoveries
// race (504 "channel/connection is not open") and the connection stays
// down, and it reopens a consumer's channel in place, where an
// acknowledgement of a delivery of the lost connection would settle a
// different message. A new connection with new channels has neither
// problem.
func (c *Conn) dial(timeout time.Duration) (*amqp.Connection, chan *amqp.Channel, error) {
	tc, err := c.cfg.TLS.ClientConfig()
	if err != nil {
		return nil, nil, fmt.Errorf("rabbitmq: TLS (MARTY_RABBITMQ_TLS_*): %w", err)
	}
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(c.name)
	conn, err := amqp.DialConfig(c.cfg.URL, amqp.Config{
		Heartbeat:       c.cfg.Heartbeat,
		TLSClientConfig: tc,
		Properties:      props,
		Dial:            amqp.DefaultDial(timeout),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("rabbitmq: connect to %s: %w", c.host, cleanErr(err))
	}
	if err := c.declareExchanges(conn); err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	pubs := make(chan *amqp.Channel, c.cfg.PublishChannels)
	for range c.cfg.PublishChannels {
		ch, err := c.publishChannel(conn)
		if err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
		pubs <- ch
	}
	return conn, pubs, nil
}

// supervise waits for the connection to be lost and connects again, until
// Close.
func (c *Conn) supervise(conn *amqp.Connection) {
	defer close(c.watchDone)
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	for {
		lostErr := <-closes // nil (closed channel) when closed by Close, or before NotifyClose
		if c.isStopping() {
			c.mu.Lock()
			c.markDownLocked(amqp.ErrClosed)
			c.mu.Unlock()
			return
		}
		if lostErr == nil {
			lostErr = amqp.ErrClosed
		}
		c.mu.Lock()
		c.markDownLocked(cleanErr(lostErr))
		c.mu.Unlock()
		c.log.Warn("disconnected from RabbitMQ; reconnecting", zap.String("host", c.host), zap.Error(cleanErr(lostErr)))
		wait := c.cfg.ReconnectWait
		for {
			t := time.NewTimer(time.Duration(float64(wait) * (0.8 + 0.4*rand.Float64())))
			select {
			case <-c.stopping:
				t.Stop()
				return
			case <-t.C:
			}
			nconn, pubs, err := c.dial(c.cfg.ConnectTimeout)
			if err == nil {
				c.mu.Lock()
				if c.closed.Load() {
					c.mu.Unlock()
					_ = nconn.Close()
					return
				}
				c.conn, c.pubs = nconn, pubs
				closes = nconn.NotifyClose(make(chan *amqp.Error, 1))
				c.markUpLocked()
				c.mu.Unlock()
				c.m.reconnects.Inc()
				c.log.Info("reconnected to RabbitMQ", zap.String("host", c.host))
				break
			}
			c.mu.Lock()
			c.lastErr = err
			c.mu.Unlock()
			var ae *amqp.Error
			if errors.As(err, &ae) && ae.Code == amqp.AccessRefused || errors.Is(err, amqp.ErrCredentials) {
				err = fmt.Errorf("rabbitmq: the broker at %s refuses the credentials on reconnection: %w", c.host, err)
				if c.fatal != nil {
					c.fatal(err)
					return
				}
				c.log.Error("RabbitMQ refuses the credentials; events cannot flow", zap.Error(err))
			} else {
				c.log.Debug("reconnect to RabbitMQ failed; retrying", zap.Duration("wait", wait), zap.Error(err))
			}
			wait = min(wait*2, c.cfg.ReconnectMax)
		}
	}
}

func (c *Conn) publishChannel(conn *amqp.Connection) (*amqp.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("rabbitmq: open a channel on %s: %w", c.host, err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("rabbitmq: put a channel in confirm mode on %s: %w", c.host, err)
	}
	return ch, nil
}

// declareExchanges declares the events exchange (direct) and the retry
// exchange (headers), both durable; an exchange that exists with another
// type fails the start.
func (c *Conn) declareExchanges(conn *amqp.Connection) error {
	for _, ex := range []struct{ name, kind string }{{c.cfg.Exchange, amqp.ExchangeDirect}, {c.RetryExchange(), amqp.ExchangeHeaders}} {
		if err := c.declare(conn, "exchange "+ex.name, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(ex.name, ex.kind, true, false, false, false, nil)
		}); err != nil {
			return err
		}
	}
	return nil
}

// declare runs one declaration on a channel of its own (a refused
// declaration closes its channel) and explains a conflict.
func (c *Conn) declare(conn *amqp.Connection, what string, fn func(ch *amqp.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq: open a channel on %s: %w", c.host, err)
	}
	defer func() { _ = ch.Close() }()
	if err := fn(ch); err != nil {
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
			return fmt.Errorf("rabbitmq: declare %s on %s: it already exists with other settings; "+
				"delete it or align MARTY_RABBITMQ_* (exchange, backoff, max_deliveries) and MARTY_EVENTS_* with it: %w",
				what, c.host, err)
		}
		return fmt.Errorf("rabbitmq: declare %s on %s: %w", what, c.host, err)
	}
	return nil
}

// cleanErr keeps an AMQP error's code and reason (never the URL).
func cleanErr(err error) error {
	var ae *amqp.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("%d %s", ae.Code, ae.Reason)
	}
	return err
}

func (c *Conn) markUpLocked() {
	select {
	case <-c.up:
	default:
		close(c.up)
		c.down = make(chan struct{})
	}
	c.downSince = time.Time{}
	c.lastErr = nil
}

func (c *Conn) markDownLocked(err error) {
	select {
	case <-c.up:
		c.up = make(chan struct{})
		close(c.down)
	default:
	}
	if c.downSince.IsZero() {
		c.downSince = time.Now()
	}
	if err != nil {
		c.lastErr = err
	}
}

func (c *Conn) isStopping() bool {
	if c.closed.Load() {
		return true
	}
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// waitConnected returns once connected, or an error when ctx ends, the app
// stops or the connection is closed.
func (c *Conn) waitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		conn, up := c.conn, c.up
		c.mu.Unlock()
		if conn == nil || c.closed.Load() {
			return ErrNotStarted
		}
		select {
		case <-up:
			return nil
		default:
		}
		select {
		case <-up:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("rabbitmq: waiting for the connection to %s: %w: %w", c.host, fxevents.ErrTransportUnavailable, ctx.Err())
		case <-c.stopping:
			return fmt.Errorf("rabbitmq: not connected to %s and the app is stopping: %w", c.host, fxevents.ErrTransportUnavailable)
		}
	}
}

// lost returns a channel closed when the current connection is lost (at
// once when it is down).
func (c *Conn) lost() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.up:
		return c.down
	default:
		ch := make(chan struct{})
		close(ch)
		return ch
	}
}

// BeginStop makes waits for a lost connection give up (the app is
// stopping); Publish then fails at once while disconnected.
func (c *Conn) BeginStop() { c.stopOnce.Do(func() { close(c.stopping) }) }

// Close closes the connection (outstanding confirmations are waited for by
// the Publish calls that sent them).
func (c *Conn) Close(ctx context.Context) error {
	c.BeginStop()
	c.mu.Lock()
	conn, done := c.conn, c.watchDone
	if conn == nil || c.closed.Swap(true) {
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	var err error
	if dl, ok := ctx.Deadline(); ok {
		err = conn.CloseDeadline(dl)
	} else {
		err = conn.Close()
	}
	if errors.Is(err, amqp.ErrClosed) {
		err = nil
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	if err != nil {
		return fmt.Errorf("rabbitmq: close the connection to %s: %w", c.host, err)
	}
	return nil
}

// health is the readiness check: failing once the connection has been
// down longer than ReadinessGrace.
func (c *Conn) health(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return ErrNotStarted
	}
	select {
	case <-c.up:
		return nil
	default:
	}
	since := c.downSince
	if since.IsZero() {
		since = time.Now()
	}
	if down := time.Since(since); down >= c.cfg.ReadinessGrace {
		return fmt.Errorf("rabbitmq: disconnected from %s for %s (grace %s): %w", c.host, down.Round(time.Millisecond), c.cfg.ReadinessGrace, orClosed(c.lastErr))
	}
	return nil
}

func orClosed(err error) error {
	if err == nil {
		return amqp.ErrClosed
	}
	return err
}
