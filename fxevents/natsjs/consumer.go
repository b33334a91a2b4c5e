package natsjs

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// ConsumerName is the durable consumer of a service's handler: the service
// and handler names joined by "_", with every character other than
// letters, digits, '-' and '_' replaced by '_'. Replicas of a service share
// it; other services have their own.
func ConsumerName(service, handler string) string {
	return sanitize(service) + "_" + sanitize(handler)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

func sanitize(s string) string {
	if s == "" {
		return "_"
	}
	return unsafeName.ReplaceAllString(s, "_")
}

// ConsumersOptions are what NewConsumers takes; the consumers' settings
// are the Conn's Config (fetch batch, ack wait, backoff, dead-letter
// subject) and the Dispatcher's.
type ConsumersOptions struct {
	// Conn is the connection to consume on (required).
	Conn *Conn
	// Dispatcher runs the handlers (required): one durable consumer per
	// handler.
	Dispatcher *fxevents.Dispatcher
	// Info names the service: its durable consumers are
	// ConsumerName(Info.Name, handler), shared by its replicas. Zero
	// value: the binary's name.
	Info fxcore.ServiceInfo
	// Logger receives the consumers' logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Stopping is the app's stop sequence, begun when the consumers stop
	// (readiness fails first); nil: a private one.
	Stopping *fxcore.Stopping
	// Workers is the number of goroutines per handler; an aggregate's
	// messages always go to the same one. 0: the dispatcher's
	// Config.Workers.
	Workers int
	// MaxDeliveries is how many deliveries a message gets before it is
	// dead-lettered. 0: the Conn's Config.MaxDeliveries, or else the
	// dispatcher's Config.MaxAttempts; it cannot be more than MaxAttempts,
	// where the dispatcher dead-letters.
	MaxDeliveries int
	// StatsInterval is how often the consumer gauges are refreshed; 0: 5s.
	StatsInterval time.Duration
}

// Consumers runs one durable pull consumer per handler of a dispatcher,
// handing each message to Dispatcher.HandleOne and acknowledging,
// redelivering or dead-lettering it as the result says.
type Consumers struct {
	conn     *Conn
	d        *fxevents.Dispatcher
	o        ConsumersOptions
	service  string
	log      *zap.Logger
	seed     maphash.Seed
	sequence *fxcore.Stopping

	list     []*consumer
	base     context.Context // handlers' context; ends at the stop deadline
	cancel   context.CancelFunc
	stopping atomic.Bool
	stopCh   chan struct{}
	// multiFilter: the server takes several filter subjects per consumer.
	multiFilter bool
	wg          sync.WaitGroup
	started     bool
}

type consumer struct {
	cs       *Consumers
	handler  string
	name     string
	subjects []string
	// only is set when the server cannot filter on several subjects
	// (before nats-server 2.10): the consumer then takes every event
	// subject and acknowledges, unhandled, what is not for its handler.
	only map[string]bool
	work []chan jetstream.Msg
	rr   atomic.Uint64
	done chan struct{} // closed when every worker returned

	mu sync.Mutex
	jc jetstream.Consumer
	it jetstream.MessagesContext

	heldMu sync.Mutex
	held   map[jetstream.Msg]int64 // fetched, not settled -> unix nanos of fetch or last InProgress
}

// NewConsumers returns the consumers of the dispatcher's handlers on the
// connection (not started: call Start, then Stop).
func NewConsumers(opts ConsumersOptions) (*Consumers, error) {
	conn, d := opts.Conn, opts.Dispatcher
	if conn == nil || d == nil {
		return nil, errors.New("natsjs: NewConsumers needs a Conn and a Dispatcher")
	}
	ev := d.Config()
	if opts.Workers <= 0 {
		opts.Workers = max(1, ev.Workers)
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = conn.cfg.MaxDeliveries
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = ev.MaxAttempts
	}
	if opts.MaxDeliveries > ev.MaxAttempts {
		return nil, fmt.Errorf("natsjs: MARTY_NATS_MAX_DELIVERIES=%d is more than MARTY_EVENTS_MAX_ATTEMPTS=%d, where the dispatcher dead-letters: raise MARTY_EVENTS_MAX_ATTEMPTS too, or leave MARTY_NATS_MAX_DELIVERIES at 0",
			opts.MaxDeliveries, ev.MaxAttempts)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.StatsInterval <= 0 {
		opts.StatsInterval = 5 * time.Second
	}
	service := opts.Info.Name
	if service == "" {
		service = binaryName()
	}
	cs := &Consumers{conn: conn, d: d, o: opts, service: service, log: opts.Logger.Named("nats.consumer"),
		seed: maphash.MakeSeed(), stopCh: make(chan struct{}), sequence: opts.Stopping}
	cs.base, cs.cancel = context.WithCancel(context.Background())
	for _, h := range d.Handlers() {
		c := &consumer{cs: cs, handler: h.Name, name: ConsumerName(service, h.Name)}
		for _, t := range h.EventTypes {
			if !validSubject(t) {
				cs.cancel()
				return nil, fmt.Errorf("natsjs: handler %s: event type %q is not a valid subject suffix (dot-separated tokens, no spaces or wildcards)", h.Name, t)
			}
			c.subjects = append(c.subjects, conn.Subject(t))
		}
		cs.list = append(cs.list, c)
	}
	return cs, nil
}

// Names lists the durable consumer names, in handler order.
func (cs *Consumers) Names() []string {
	out := make([]string, len(cs.list))
	for i, c := range cs.list {
		out[i] = c.name
	}
	return out
}

func (cs *Consumers) consumerConfig(c *consumer) jetstream.ConsumerConfig {
	cfg := cs.conn.cfg
	cc := jetstream.ConsumerConfig{
		Durable:       c.name,
		Description:   "martyfx handler " + c.handler + " of service " + cs.service,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// The consumer counts deliveries itself and dead-letters past
		// MaxDeliveries, so the server never drops a message silently.
		MaxDeliver: -1,
		// Pull requests bound what is in flight; the server's cap only has
		// to stay above it for every replica, or a pull ends with "409
		// Exceeded MaxAckPending" and the client waits for the pull to expire.
		MaxAckPending: max(10_000, 32*cfg.FetchBatch),
	}
	switch {
	case len(c.subjects) == 1:
		cc.FilterSubject = c.subjects[0]
	case cs.multiFilter:
		cc.FilterSubjects = c.subjects
	default:
		cc.FilterSubject = cs.conn.cfg.SubjectPrefix + ".>"
		c.only = make(map[string]bool, len(c.subjects))
		for _, s := range c.subjects {
			c.only[s] = true
		}
	}
	return cc
}

// Start creates or updates the durable consumers and starts consuming.
func (cs *Consumers) Start(ctx context.Context) error {
	js := cs.conn.JetStream()
	if js == nil {
		return ErrNotStarted
	}
	cs.multiFilter = supportsMultiFilter(cs.conn.NATS().ConnectedServerVersion())
	for _, c := range cs.list {
		jc, err := js.CreateOrUpdateConsumer(ctx, cs.conn.cfg.Stream, cs.consumerConfig(c))
		if err != nil {
			return fmt.Errorf("natsjs: create consumer %s on stream %s (subjects %s): %w", c.name, cs.conn.cfg.Stream, strings.Join(c.subjects, ","), err)
		}
		c.jc = jc
	}
	cs.started = true
	for _, c := range cs.list {
		c.work = make([]chan jetstream.Msg, cs.o.Workers)
		c.held = make(map[jetstream.Msg]int64, cs.conn.cfg.FetchBatch)
		c.done = make(chan struct{})
		per := max(1, cs.conn.cfg.FetchBatch/cs.o.Workers)
		var workers sync.WaitGroup
		for i := range c.work {
			c.work[i] = make(chan jetstream.Msg, per)
			workers.Go(func() { c.worker(i) })
		}
		cs.wg.Go(func() { workers.Wait(); close(c.done) })
		cs.wg.Go(c.fetch)
		cs.wg.Go(c.watchdog)
	}
	if len(cs.list) > 0 {
		cs.wg.Go(cs.statsLoop)
	}
	return nil
}

// Stop begins the app's stop sequence (ConsumersOptions.Stopping), stops
// fetching and handles the messages already fetched until ctx ends; then it
// cancels the running handlers and gives the rest back to the server (Nak)
// for immediate redelivery.
func (cs *Consumers) Stop(ctx context.Context) error {
	if cs.sequence != nil {
		cs.sequence.Begin()
	}
	if !cs.started {
		cs.cancel()
		return nil
	}
	if cs.stopping.Swap(true) {
		return nil
	}
	close(cs.stopCh)
	for _, c := range cs.list {
		c.mu.Lock()
		if c.it != nil {
			c.it.Drain()
		}
		c.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
		cs.cancel()
		return nil
	case <-ctx.Done():
	}
	cs.cancel() // handlers see their context end; workers Nak what is left
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		return fmt.Errorf("natsjs: stop consumers: handlers did not return after their context ended: %w", ctx.Err())
	}
	return fmt.Errorf("natsjs: stop consumers: fetched messages handed back for redelivery: %w", ctx.Err())
}

// fetch pulls messages in batches and hands them to the workers, an
// aggregate's messages always to the same worker.
func (c *consumer) fetch() {
	defer func() {
		for _, ch := range c.work {
			close(ch)
		}
	}()
	cs := c.cs
	wait := cs.conn.cfg.ReconnectWait
	for !cs.stopping.Load() {
		// A short pull expiry (heartbeats at half of it) bounds how long a
		// lost or refused pull request can stall consumption.
		it, err := c.consumer().Messages(jetstream.PullMaxMessages(cs.conn.cfg.FetchBatch), jetstream.PullExpiry(5*time.Second))
		if err != nil {
			cs.log.Warn("consume: open the message iterator; retrying", zap.String("consumer", c.name), zap.Error(err))
			if !cs.sleep(wait) {
				return
			}
			wait = min(wait*2, cs.conn.cfg.ReconnectMax)
			continue
		}
		c.mu.Lock()
		c.it = it
		if cs.stopping.Load() {
			it.Drain()
		}
		c.mu.Unlock()
		if err := c.pump(it); err != nil {
			if cs.stopping.Load() {
				return
			}
			cs.log.Warn("consume: message iterator ended; recreating the consumer", zap.String("consumer", c.name), zap.Error(err))
			if !cs.sleep(wait) {
				return
			}
			wait = min(wait*2, cs.conn.cfg.ReconnectMax)
			c.recreate()
			continue
		}
		wait = cs.conn.cfg.ReconnectWait
	}
}

// pump reads the iterator until it is closed (nil on a drain at stop).
func (c *consumer) pump(it jetstream.MessagesContext) error {
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && c.cs.stopping.Load() {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
				errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrBadRequest) {
				it.Stop()
				return err
			}
			c.cs.log.Debug("consume", zap.String("consumer", c.name), zap.Error(err))
			continue
		}
		var w int
		if len(c.work) > 1 {
			if agg := msg.Headers()[HeaderAggregateID]; len(agg) > 0 && agg[0] != "" {
				w = int(maphash.String(c.cs.seed, agg[0]) % uint64(len(c.work)))
			} else {
				w = int(c.rr.Add(1) % uint64(len(c.work)))
			}
		}
		c.hold(msg)
		c.work[w] <- msg
	}
}

// hold and release track the fetched messages not settled yet: the
// watchdog keeps them all (queued or running) with InProgress, so a queue
// behind a slow handler is not redelivered.
func (c *consumer) hold(msg jetstream.Msg) {
	now := time.Now().UnixNano()
	c.heldMu.Lock()
	c.held[msg] = now
	c.heldMu.Unlock()
}

func (c *consumer) release(msg jetstream.Msg) {
	c.heldMu.Lock()
	delete(c.held, msg)
	c.heldMu.Unlock()
}

// recreate creates the durable consumer again (someone deleted it).
func (c *consumer) recreate() {
	cs := c.cs
	ctx, cancel := context.WithTimeout(cs.base, cs.conn.cfg.ConnectTimeout)
	defer cancel()
	jc, err := cs.conn.JetStream().CreateOrUpdateConsumer(ctx, cs.conn.cfg.Stream, cs.consumerConfig(c))
	if err != nil {
		cs.log.Warn("consume: recreate the consumer", zap.String("consumer", c.name), zap.Error(err))
		return
	}
	c.mu.Lock()
	c.jc = jc
	c.mu.Unlock()
}

func (c *consumer) consumer() jetstream.Consumer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jc
}

func (cs *Consumers) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-cs.stopCh:
		return false
	case <-t.C:
		return true
	}
}

func (c *consumer) worker(i int) {
	for msg := range c.work[i] {
		c.handle(msg)
		c.release(msg)
	}
}

// handle runs the handler on msg and settles it: Ack on success,
// NakWithDelay to retry, Term plus a dead-letter copy after the last
// delivery.
func (c *consumer) handle(msg jetstream.Msg) {
	cs := c.cs
	if c.only != nil && !c.only[msg.Subject()] { // not this handler's (pre-2.10 server)
		_ = msg.Ack()
		return
	}
	if cs.base.Err() != nil { // past the stop deadline: give it back
		_ = msg.Nak()
		return
	}
	attempt := 1
	if md, err := msg.Metadata(); err == nil {
		attempt = int(md.NumDelivered)
	}
	env, err := decodeEnvelope(cs.conn.cfg.SubjectPrefix, msg)
	if err != nil {
		err = fxevents.Permanent(err)
		cs.d.DeadLetter(cs.base, c.handler, env, err, attempt)
		c.deadLetter(msg, env, err, attempt)
		return
	}
	if attempt > cs.o.MaxDeliveries {
		// The last attempt never settled the message (the process died in
		// it, or copying the dead letter failed): do not run it again.
		err := fmt.Errorf("natsjs: delivered %d times, more than the max of %d; the handler was not run again", attempt, cs.o.MaxDeliveries)
		cs.d.DeadLetter(cs.base, c.handler, env, err, attempt-1)
		c.deadLetter(msg, env, err, attempt-1)
		return
	}
	res := cs.d.HandleOne(cs.base, c.handler, env, attempt)
	switch {
	case res.Err == nil:
		if err := msg.Ack(); err != nil {
			cs.log.Warn("ack", zap.String("consumer", c.name), zap.String("event_id", env.ID), zap.Error(err))
		}
	case res.DeadLettered:
		c.deadLetter(msg, env, res.Err, attempt)
	case res.Retry && cs.base.Err() != nil:
		_ = msg.Nak()
	case res.Retry && attempt >= cs.o.MaxDeliveries:
		cs.d.DeadLetter(cs.base, c.handler, env, res.Err, attempt)
		c.deadLetter(msg, env, res.Err, attempt)
	case res.Retry:
		if err := msg.NakWithDelay(c.delay(attempt, res.RetryAfter)); err != nil {
			cs.log.Warn("nak", zap.String("consumer", c.name), zap.String("event_id", env.ID), zap.Error(err))
		}
	default: // an error that is neither retried nor dead-lettered (unknown handler)
		cs.log.Error("handler failed without a retry; terminating the message", zap.String("consumer", c.name),
			zap.String("event_id", env.ID), zap.Error(res.Err))
		_ = msg.Term()
	}
}

func (c *consumer) delay(attempt int, computed time.Duration) time.Duration {
	b := c.cs.conn.cfg.Backoff
	if len(b) == 0 {
		return computed
	}
	return b[min(attempt-1, len(b)-1)]
}

// deadLetter copies msg to "<dead letter subject>.<consumer>" (with
// PubAck) and terminates it; if the copy fails, the message is redelivered
// later to try again.
func (c *consumer) deadLetter(msg jetstream.Msg, env fxevents.Envelope, cause error, attempts int) {
	cs := c.cs
	dl := cs.conn.message(env, cs.conn.cfg.deadLetterPrefix()+"."+c.name)
	dl.Header[jetstream.MsgIDHeader] = []string{env.ID + ":dead:" + c.name}
	dl.Header[HeaderDeadConsumer] = []string{c.name}
	dl.Header[HeaderDeadHandler] = []string{c.handler}
	dl.Header[HeaderDeadError] = []string{truncate(strings.ReplaceAll(cause.Error(), "\n", " "), 1024)}
	dl.Header[HeaderDeadAttempts] = []string{strconv.Itoa(attempts)}
	dl.Header[HeaderDeadSubject] = []string{msg.Subject()}
	ctx, cancel := context.WithTimeout(context.Background(), cs.conn.cfg.PublishTimeout)
	defer cancel()
	if _, err := cs.conn.JetStream().PublishMsg(ctx, dl); err != nil {
		cs.log.Error("copy to the dead-letter subject failed; the message will be redelivered", zap.String("consumer", c.name),
			zap.String("subject", dl.Subject), zap.String("event_id", env.ID), zap.Error(err))
		_ = msg.NakWithDelay(cs.conn.cfg.ReconnectMax)
		return
	}
	if err := msg.Term(); err != nil { // Term, not TermWithReason: servers before 2.10.4 ignore the latter
		cs.log.Warn("term", zap.String("consumer", c.name), zap.String("event_id", env.ID), zap.Error(err))
	}
	cs.conn.m.deadLetters.WithLabelValues(c.name).Inc()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// watchdog keeps the messages of long handlers with InProgress, every
// AckWait/3.
func (c *consumer) watchdog() {
	every := max(c.cs.conn.cfg.AckWait/3, time.Millisecond)
	t := time.NewTicker(min(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		var due []jetstream.Msg
		c.heldMu.Lock()
		for m, touched := range c.held {
			if now-touched >= int64(every) {
				c.held[m] = now
				due = append(due, m)
			}
		}
		c.heldMu.Unlock()
		for _, m := range due {
			if err := m.InProgress(); err != nil {
				c.cs.log.Debug("in progress", zap.String("consumer", c.name), zap.Error(err))
			}
		}
	}
}

// statsLoop refreshes the pending, ack-pending and redelivered gauges.
func (cs *Consumers) statsLoop() {
	t := time.NewTicker(cs.o.StatsInterval)
	defer t.Stop()
	for {
		cs.refreshStats()
		select {
		case <-cs.stopCh:
			return
		case <-t.C:
		}
	}
}

func (cs *Consumers) refreshStats() {
	for _, c := range cs.list {
		ctx, cancel := context.WithTimeout(cs.base, 2*time.Second)
		info, err := c.consumer().Info(ctx)
		cancel()
		if err != nil {
			continue
		}
		cs.conn.m.pending.WithLabelValues(c.name).Set(float64(info.NumPending))
		cs.conn.m.ackPending.WithLabelValues(c.name).Set(float64(info.NumAckPending))
		cs.conn.m.redelivered.WithLabelValues(c.name).Set(float64(info.NumRedelivered))
	}
}

// supportsMultiFilter reports whether a nats-server version (e.g. "2.10.4")
// accepts consumers with several filter subjects, added in 2.10.
func supportsMultiFilter(version string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(version, "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 2 || (major == 2 && minor >= 10)
}
