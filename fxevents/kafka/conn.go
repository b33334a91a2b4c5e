package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// ErrNotStarted is returned by Publish before Start or after Close. It
// matches fxevents.ErrTransportUnavailable (errors.Is).
var ErrNotStarted = fmt.Errorf("kafka: not connected (Start not called, or closed): %w", fxevents.ErrTransportUnavailable)

// ConnOptions are what NewConn takes besides the Config; the zero value
// works.
type ConnOptions struct {
	// Logger receives the client's logs (franz-go's warnings and errors
	// too); nil: zap.NewNop().
	Logger *zap.Logger
	// Info names the client: client id "<Info.Name>/<Info.InstanceID>".
	// Zero value: the binary's name.
	Info fxcore.ServiceInfo
	// Registerer receives the marty_kafka_* metrics; nil: they are not
	// registered.
	Registerer prometheus.Registerer
}

// Conn is an app's Kafka producer: the idempotent franz-go client that
// Publish sends envelopes with, and what the consumers share (config,
// metrics, topic management). It is the fxevents.Transport.
type Conn struct {
	cfg      Config
	clientID string
	log      *zap.Logger
	m        *metrics

	mu        sync.Mutex
	cl        *kgo.Client
	prodOpts  []kgo.Opt      // the producer's options, to make a fresh one
	retired   sync.WaitGroup // closing producers replaced by resetProducer
	adm       *kadm.Client
	topics    map[string]bool // known to exist
	downSince time.Time
	lastErr   error
}

// NewConn validates cfg and returns a Conn for it (not connected: call
// Start, then Close). It registers the marty_kafka_* metrics.
func NewConn(cfg Config, opts ConnOptions) (*Conn, error) {
	cfg.SASLMechanism = strings.ToLower(cfg.SASLMechanism)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	id := opts.Info.Name
	if id == "" {
		id = binaryName()
	}
	if opts.Info.InstanceID != "" {
		id += "/" + opts.Info.InstanceID
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("kafka: register metrics: %w", err)
	}
	return &Conn{cfg: cfg, clientID: sanitizeClientID(id), log: opts.Logger.Named("kafka"), m: m, topics: map[string]bool{}}, nil
}

func binaryName() string {
	if len(os.Args) > 0 && os.Args[0] != "" {
		name := filepath.Base(os.Args[0])
		return strings.TrimSuffix(name, filepath.Ext(name))
	}
	return "martyfx"
}

func sanitizeClientID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' || r == '/' {
			return r
		}
		return '_'
	}, s)
}

// Config returns the configuration.
func (c *Conn) Config() Config { return c.cfg }

// Client returns the producer's franz-go client (nil before Start).
func (c *Conn) Client() *kgo.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cl
}

// Topic returns the topic events of eventType are published to.
func (c *Conn) Topic(eventType string) string { return c.cfg.TopicPrefix + "." + eventType }

// baseOptions are the client options every client of the Conn shares:
// brokers, client id, TLS, SASL, timeouts, logger.
func (c *Conn) baseOptions() ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.cfg.brokers()...),
		kgo.ClientID(c.clientID),
		kgo.DialTimeout(c.cfg.DialTimeout),
		kgo.WithLogger(zapLogger{c.log}),
		kgo.RetryTimeout(c.cfg.PublishTimeout),
	}
	tc, err := c.cfg.TLS.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kafka: TLS (MARTY_KAFKA_TLS_*): %w", err)
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch c.cfg.SASLMechanism {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.cfg.SASLUsername, Pass: c.cfg.SASLPassword}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.cfg.SASLUsername, Pass: c.cfg.SASLPassword}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.cfg.SASLUsername, Pass: c.cfg.SASLPassword}.AsSha512Mechanism()))
	}
	return opts, nil
}

// Start creates the idempotent producer and checks that a broker answers
// (within DialTimeout); an unreachable cluster fails with its addresses.
func (c *Conn) Start(ctx context.Context) error {
	opts, err := c.baseOptions()
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence needs acks=all; franz-go's producer is idempotent by default
		kgo.RecordDeliveryTimeout(c.cfg.PublishTimeout),
		kgo.ProducerLinger(0),
	)
	c.prodOpts = opts
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: client for %s: %w", c.cfg.Brokers, err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		cl.Close()
		return fmt.Errorf("kafka: connect to %s: %w", c.cfg.Brokers, err)
	}
	c.mu.Lock()
	c.cl, c.adm = cl, kadm.NewClient(cl)
	c.mu.Unlock()
	c.log.Info("connected to Kafka", zap.String("brokers", c.cfg.Brokers), zap.String("topic_prefix", c.cfg.TopicPrefix))
	return nil
}

// Close flushes what is being produced (within ctx) and closes the
// producer.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	cl := c.cl
	c.cl, c.adm = nil, nil
	c.mu.Unlock()
	if cl == nil {
		c.retired.Wait()
		return nil
	}
	var err error
	if ferr := cl.Flush(ctx); ferr != nil && ctx.Err() == nil {
		err = fmt.Errorf("kafka: flush: %w", ferr)
	}
	cl.Close()
	c.retired.Wait()
	return err
}

// resetProducer replaces the producer old by a fresh one (a new producer
// id and sequence state) after records timed out: an idempotent producer
// whose batch failed while it may have been in flight can otherwise keep
// failing the partition's later records. Concurrent publishes on old fail
// as unavailable and are sent again by the outbox.
func (c *Conn) resetProducer(old *kgo.Client) {
	c.mu.Lock()
	if c.cl != old || c.cl == nil {
		c.mu.Unlock()
		return
	}
	cl, err := kgo.NewClient(c.prodOpts...)
	if err != nil {
		c.mu.Unlock()
		c.log.Warn("replace the producer", zap.Error(err))
		return
	}
	c.cl, c.adm = cl, kadm.NewClient(cl)
	c.mu.Unlock()
	c.m.producerResets.Inc()
	c.log.Warn("records timed out; producing with a fresh producer from now on")
	c.retired.Go(old.Close)
}

// EnsureTopics creates the topics that do not exist yet with the
// configured partitions and replication factor or, with CreateTopics
// false or when the cluster refuses, fails naming them and what to do.
func (c *Conn) EnsureTopics(ctx context.Context, topics ...string) error {
	c.mu.Lock()
	adm := c.adm
	var missing []string
	for _, t := range topics {
		if !c.topics[t] {
			missing = append(missing, t)
		}
	}
	c.mu.Unlock()
	if len(missing) == 0 {
		return nil
	}
	if adm == nil {
		return ErrNotStarted
	}
	details, err := adm.ListTopics(ctx, missing...)
	if err != nil {
		return fmt.Errorf("kafka: look up topics %s on %s: %w", strings.Join(missing, ","), c.cfg.Brokers, unavailable(err))
	}
	var create []string
	for _, t := range missing {
		if d, ok := details[t]; ok && d.Err == nil {
			c.known(t)
			continue
		}
		create = append(create, t)
	}
	if len(create) == 0 {
		return nil
	}
	if !c.cfg.CreateTopics {
		return fmt.Errorf("kafka: topics %s do not exist and MARTY_KAFKA_CREATE_TOPICS=false: create them (%d partitions advised) or allow the service to", strings.Join(create, ","), c.cfg.Partitions)
	}
	resps, err := adm.CreateTopics(ctx, int32(c.cfg.Partitions), int16(c.cfg.ReplicationFactor), nil, create...)
	if err != nil {
		return fmt.Errorf("kafka: create topics %s on %s: %w", strings.Join(create, ","), c.cfg.Brokers, unavailable(err))
	}
	for _, t := range create {
		r, ok := resps[t]
		switch {
		case !ok:
			return fmt.Errorf("kafka: create topic %s on %s: no answer", t, c.cfg.Brokers)
		case r.Err == nil || errors.Is(r.Err, kerr.TopicAlreadyExists):
			c.known(t)
			if r.Err == nil {
				c.log.Info("created topic", zap.String("topic", t), zap.Int("partitions", c.cfg.Partitions), zap.Int("replication_factor", c.cfg.ReplicationFactor))
			}
		case errors.Is(r.Err, kerr.TopicAuthorizationFailed), errors.Is(r.Err, kerr.ClusterAuthorizationFailed):
			return fmt.Errorf("kafka: topic %s does not exist and this user may not create it: create it (%d partitions, replication %d) or grant CREATE: %w",
				t, c.cfg.Partitions, c.cfg.ReplicationFactor, r.Err)
		case errors.Is(r.Err, kerr.InvalidReplicationFactor):
			return fmt.Errorf("kafka: create topic %s: MARTY_KAFKA_REPLICATION_FACTOR=%d is more than the brokers available: %w", t, c.cfg.ReplicationFactor, r.Err)
		default:
			return fmt.Errorf("kafka: create topic %s: %w", t, unavailable(r.Err))
		}
	}
	return nil
}

func (c *Conn) known(t string) {
	c.mu.Lock()
	c.topics[t] = true
	c.mu.Unlock()
}

// unavailable marks errors that mean the cluster could not be reached or
// did not answer in time (rather than refused) with
// fxevents.ErrTransportUnavailable.
func unavailable(err error) error {
	if err == nil || errors.Is(err, fxevents.ErrTransportUnavailable) {
		return err
	}
	var ne net.Error
	var ke *kerr.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries),
		errors.Is(err, kgo.ErrClientClosed), errors.As(err, &ne), errors.Is(err, net.ErrClosed),
		errors.As(err, &ke) && ke.Retriable:
		return fmt.Errorf("%w: %w", fxevents.ErrTransportUnavailable, err)
	}
	return err
}

// health is the readiness check: it pings the cluster and fails once no
// broker answered for ReadinessGrace.
func (c *Conn) health(ctx context.Context) error {
	cl := c.Client()
	if cl == nil {
		return ErrNotStarted
	}
	err := cl.Ping(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.downSince, c.lastErr = time.Time{}, nil
		c.m.up.Set(1)
		return nil
	}
	c.m.up.Set(0)
	if c.downSince.IsZero() {
		c.downSince = time.Now()
	}
	c.lastErr = err
	if down := time.Since(c.downSince); down >= c.cfg.ReadinessGrace {
		return fmt.Errorf("kafka: no broker of %s answered for %s (grace %s): %w", c.cfg.Brokers, down.Round(time.Millisecond), c.cfg.ReadinessGrace, err)
	}
	return nil
}

// zapLogger hands franz-go's warnings and errors to zap.
type zapLogger struct{ log *zap.Logger }

func (z zapLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (z zapLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		k, _ := keyvals[i].(string)
		fields = append(fields, zap.Any(k, keyvals[i+1]))
	}
	switch level {
	case kgo.LogLevelError:
		z.log.Error(msg, fields...)
	case kgo.LogLevelWarn:
		z.log.Warn(msg, fields...)
	case kgo.LogLevelInfo:
		z.log.Info(msg, fields...)
	default:
		z.log.Debug(msg, fields...)
	}
}
