package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// ConsumerName is the consumer of a service's handler: the service and
// handler names joined by "_", every character other than letters, digits,
// '-' and '_' replaced by '_'. Replicas of a service share its queues;
// other services have their own.
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

// QueueName is a consumer's work queue of a partition:
// "<exchange>.<consumer>.<partition>".
func QueueName(exchange, consumer string, partition int) string {
	return exchange + "." + consumer + "." + strconv.Itoa(partition)
}

// DelayQueueName is a consumer's delay queue before attempt level+1:
// "<exchange>.<consumer>.retry.<level>".
func DelayQueueName(exchange, consumer string, level int) string {
	return exchange + "." + consumer + ".retry." + strconv.Itoa(level)
}

// MembersQueueName is the queue every replica of a consumer subscribes to
// (it holds no messages): its consumer count is the number of replicas,
// which single-active-consumer queues do not tell.
func MembersQueueName(exchange, consumer string) string {
	return exchange + "." + consumer + ".members"
}

// DeadQueueName is a consumer's dead-letter queue:
// "<exchange>.<consumer>.dead".
func DeadQueueName(exchange, consumer string) string {
	return exchange + "." + consumer + ".dead"
}

// ConsumersOptions are what NewConsumers takes.
type ConsumersOptions struct {
	// Conn is the connection to consume on (required).
	Conn *Conn
	// Dispatcher runs the handlers (required): one consumer, with its
	// partition queues, per handler.
	Dispatcher *fxevents.Dispatcher
	// Info names the service: ConsumerName(Info.Name, handler). Zero value:
	// the binary's name.
	Info fxcore.ServiceInfo
	// Logger receives the consumers' logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Stopping is the app's stop sequence, begun when the consumers stop;
	// nil: none.
	Stopping *fxcore.Stopping
	// MaxDeliveries is how many times a message is handled before it goes
	// to the dead-letter queue. 0: the Conn's Config.MaxDeliveries, or else
	// the dispatcher's Config.MaxAttempts (it cannot be more).
	MaxDeliveries int
}

// Consumers runs, for every handler of a dispatcher, one consumer per
// partition queue, each handling its messages one at a time, in order, and
// acknowledging a message only after the handler returned.
type Consumers struct {
	conn     *Conn
	d        *fxevents.Dispatcher
	o        ConsumersOptions
	service  string
	log      *zap.Logger
	sequence *fxcore.Stopping

	list     []*consumer
	base     context.Context // handlers' context; ends at the stop deadline
	cancel   context.CancelFunc
	stopping atomic.Bool
	stopCh   chan struct{}
	wg       sync.WaitGroup
	started  bool
}

type consumer struct {
	cs      *Consumers
	handler string
	name    string
	types   []string
	delays  []time.Duration // by retry level - 1
	parts   []*partition
	members *partition
}

type partition struct {
	c       *consumer
	idx     int
	queue   string
	last    atomic.Int64  // unix nanos of the last delivery
	handoff chan struct{} // asks the loop to give the queue to a standby replica
	members bool          // the members queue: only subscribed to
}

// NewConsumers returns the consumers of the dispatcher's handlers (not
// started: call Start, then Stop).
func NewConsumers(opts ConsumersOptions) (*Consumers, error) {
	conn, d := opts.Conn, opts.Dispatcher
	if conn == nil || d == nil {
		return nil, errors.New("rabbitmq: NewConsumers needs a Conn and a Dispatcher")
	}
	ev := d.Config()
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = conn.cfg.MaxDeliveries
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = ev.MaxAttempts
	}
	if opts.MaxDeliveries > ev.MaxAttempts {
		return nil, fmt.Errorf("rabbitmq: MARTY_RABBITMQ_MAX_DELIVERIES=%d is more than MARTY_EVENTS_MAX_ATTEMPTS=%d, where the dispatcher dead-letters: raise MARTY_EVENTS_MAX_ATTEMPTS too, or leave MARTY_RABBITMQ_MAX_DELIVERIES at 0",
			opts.MaxDeliveries, ev.MaxAttempts)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	service := opts.Info.Name
	if service == "" {
		service = binaryName()
	}
	cs := &Consumers{conn: conn, d: d, o: opts, service: service, log: opts.Logger.Named("rabbitmq.consumer"),
		stopCh: make(chan struct{}), sequence: opts.Stopping}
	cs.base, cs.cancel = context.WithCancel(context.Background())
	delays := make([]time.Duration, opts.MaxDeliveries-1)
	for i := range delays {
		delays[i] = retryDelay(conn.cfg.Backoff, ev.BackoffInitial, ev.BackoffMax, i+1)
	}
	for _, h := range d.Handlers() {
		c := &consumer{cs: cs, handler: h.Name, name: ConsumerName(service, h.Name), types: h.EventTypes, delays: delays}
		for _, t := range h.EventTypes {
			if t == "" || len(t) > 240 {
				cs.cancel()
				return nil, fmt.Errorf("rabbitmq: handler %s: event type %q must have 1 to 240 bytes (it is part of the routing key)", h.Name, t)
			}
		}
		for p := range conn.cfg.Partitions {
			c.parts = append(c.parts, &partition{c: c, idx: p, queue: QueueName(conn.cfg.Exchange, c.name, p), handoff: make(chan struct{}, 1)})
		}
		c.members = &partition{c: c, idx: -1, queue: MembersQueueName(conn.cfg.Exchange, c.name), handoff: make(chan struct{}, 1), members: true}
		cs.list = append(cs.list, c)
	}
	return cs, nil
}

// retryDelay is the delay before attempt level+1: Backoff[level-1] (the
// last one repeating), or initial doubled per level up to maxDelay.
func retryDelay(list Durations, initial, maxDelay time.Duration, level int) time.Duration {
	if len(list) > 0 {
		return list[min(level-1, len(list)-1)]
	}
	d := initial
	for i := 1; i < level && d < maxDelay; i++ {
		d *= 2
	}
	return max(min(d, maxDelay), time.Millisecond)
}

// Names lists the consumer names, in handler order.
func (cs *Consumers) Names() []string {
	out := make([]string, len(cs.list))
	for i, c := range cs.list {
		out[i] = c.name
	}
	return out
}

// RetryDelays returns the delay queues' TTLs, by retry level.
func (cs *Consumers) RetryDelays() []time.Duration {
	if len(cs.list) == 0 {
		return nil
	}
	return append([]time.Duration(nil), cs.list[0].delays...)
}

// Start declares every consumer's queues and bindings (failing with a
// clear error when one exists with other settings) and starts consuming.
func (cs *Consumers) Start(ctx context.Context) error {
	conn := cs.conn.AMQP()
	if conn == nil {
		return ErrNotStarted
	}
	for _, c := range cs.list {
		if err := c.declare(conn); err != nil {
			return err
		}
	}
	cs.started = true
	for _, c := range cs.list {
		for _, p := range c.parts {
			cs.wg.Go(p.loop)
		}
		if cs.conn.cfg.RebalanceInterval > 0 {
			cs.wg.Go(c.members.loop)
		}
	}
	if len(cs.list) > 0 {
		cs.wg.Go(cs.statsLoop)
	}
	return nil
}

func quorum(extra amqp.Table) amqp.Table {
	t := amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
	for k, v := range extra {
		t[k] = v
	}
	return t
}

// declare declares the consumer's partition queues (quorum,
// single-active-consumer) bound to its event types, its delay queues
// (quorum, message TTL, dead-lettered at least once back to the work queue
// through the default exchange) bound to the retry exchange, and its
// dead-letter queue.
func (c *consumer) declare(conn *amqp.Connection) error {
	cs := c.cs
	ex := cs.conn.cfg.Exchange
	for _, p := range c.parts {
		if err := cs.conn.declare(conn, "queue "+p.queue, func(ch *amqp.Channel) error {
			if _, err := ch.QueueDeclare(p.queue, true, false, false, false, quorum(amqp.Table{amqp.SingleActiveConsumerArg: true})); err != nil {
				return err
			}
			for _, t := range c.types {
				if err := ch.QueueBind(p.queue, RoutingKey(t, p.idx), ex, false, nil); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	for i, d := range c.delays {
		level := i + 1
		q := DelayQueueName(ex, c.name, level)
		if err := cs.conn.declare(conn, "queue "+q, func(ch *amqp.Channel) error {
			if _, err := ch.QueueDeclare(q, true, false, false, false, quorum(amqp.Table{
				"x-message-ttl":          d.Milliseconds(),
				"x-dead-letter-exchange": "",
				"x-dead-letter-strategy": "at-least-once",
				"x-overflow":             "reject-publish",
			})); err != nil {
				return err
			}
			return ch.QueueBind(q, "", cs.conn.RetryExchange(), false, amqp.Table{
				"x-match": "all", HeaderConsumer: c.name, HeaderRetryLevel: strconv.Itoa(level),
			})
		}); err != nil {
			return err
		}
	}
	dq := DeadQueueName(ex, c.name)
	if err := cs.conn.declare(conn, "queue "+dq, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(dq, true, false, false, false, quorum(nil))
		return err
	}); err != nil {
		return err
	}
	if cs.conn.cfg.RebalanceInterval <= 0 {
		return nil
	}
	return cs.conn.declare(conn, "queue "+c.members.queue, func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare(c.members.queue, true, false, false, false, nil) // classic: it never holds a message
		return err
	})
}

// Stop stops taking messages, lets the running handlers finish until ctx
// ends, then cancels them; unacknowledged messages go back to their queues
// (in order) when the channels close.
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
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
		cs.cancel()
		return nil
	case <-ctx.Done():
	}
	cs.cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		return fmt.Errorf("rabbitmq: stop consumers: handlers did not return after their context ended: %w", ctx.Err())
	}
	return fmt.Errorf("rabbitmq: stop consumers: running handlers cancelled, their messages go back to the queues: %w", ctx.Err())
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

// loop consumes the partition queue, one session (a fresh channel) per
// connection: a delivery of a lost connection is never acknowledged on a
// later one.
func (p *partition) loop() {
	cs := p.c.cs
	for !cs.stopping.Load() {
		if err := cs.conn.waitConnected(cs.base); err != nil {
			if !cs.sleep(cs.conn.cfg.ReconnectWait) {
				return
			}
			continue
		}
		err := p.session()
		if err == nil || cs.stopping.Load() {
			continue
		}
		cs.log.Warn("consume: session ended; subscribing again", zap.String("queue", p.queue), zap.Error(err))
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			if conn := cs.conn.AMQP(); conn != nil {
				if derr := p.c.declare(conn); derr != nil {
					cs.log.Warn("consume: declare the queues again", zap.String("consumer", p.c.name), zap.Error(derr))
				}
			}
		}
		if !cs.sleep(cs.conn.cfg.ReconnectWait) {
			return
		}
	}
}

// session subscribes on a new channel and handles deliveries until the
// connection or channel is lost, the broker cancels the subscription, a
// handoff is asked for, or the consumers stop. Closing the channel gives
// the unacknowledged messages back to the queue.
func (p *partition) session() error {
	cs := p.c.cs
	lost := cs.conn.lost()
	conn := cs.conn.AMQP()
	if conn == nil {
		return ErrNotStarted
	}
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	defer func() { _ = ch.Close() }()
	if err := ch.Qos(cs.conn.cfg.Prefetch, 0, false); err != nil {
		return err
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	cancelled := ch.NotifyCancel(make(chan string, 1))
	deliveries, err := ch.Consume(p.queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	for {
		select {
		case <-cs.stopCh:
			return nil
		case <-lost:
			return errors.New("connection lost")
		case e := <-closed:
			if e == nil {
				return errors.New("channel closed")
			}
			return e
		case <-cancelled:
			return errors.New("the broker cancelled the subscription (queue deleted?)")
		case <-p.handoff:
			cs.log.Debug("handing the partition to a standby replica", zap.String("queue", p.queue))
			p.last.Store(0)
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("delivery channel closed")
			}
			if p.members {
				_ = d.Ack(false) // someone else's message: nothing to do
				continue
			}
			p.last.Store(time.Now().UnixNano())
			p.handle(ch, d)
		}
	}
}

// attemptOf is the delivery's attempt: the retry copy's HeaderAttempt
// (1 for a first delivery), plus the broker's x-delivery-count (a message
// given back unacknowledged: the consumer died or stopped in it).
func attemptOf(d amqp.Delivery) int {
	attempt := 1
	if n, ok := toInt(d.Headers[HeaderAttempt]); ok && n > 0 {
		attempt = n
	}
	if n, ok := toInt(d.Headers["x-delivery-count"]); ok && n > 0 {
		attempt += n
	}
	return attempt
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int8:
		return int(n), true
	case int16:
		return int(n), true
	case int32:
		return int(n), true
	case int64:
		return int(n), true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return int(n), true
	case string:
		i, err := strconv.Atoi(n)
		return i, err == nil
	}
	return 0, false
}

// handle runs the handler on d and settles it: Ack on success; a copy to
// the next delay queue, then Ack, to retry; a copy to the dead-letter
// queue, then Ack, after the last attempt.
func (p *partition) handle(ch *amqp.Channel, d amqp.Delivery) {
	c := p.c
	cs := c.cs
	if cs.base.Err() != nil {
		_ = d.Nack(false, true)
		return
	}
	attempt := attemptOf(d)
	env, err := Envelope(d)
	if err != nil {
		err = fxevents.Permanent(err)
		cs.d.DeadLetter(cs.base, c.handler, env, err, attempt)
		p.deadLetter(ch, d, env, err, attempt)
		return
	}
	maxDeliveries := cs.o.MaxDeliveries
	if attempt > maxDeliveries {
		err := fmt.Errorf("rabbitmq: delivered %d times, more than the max of %d; the handler was not run again", attempt, maxDeliveries)
		cs.d.DeadLetter(cs.base, c.handler, env, err, attempt-1)
		p.deadLetter(ch, d, env, err, attempt-1)
		return
	}
	res := cs.d.HandleOne(cs.base, c.handler, env, attempt)
	switch {
	case res.Err == nil:
		p.ack(d, env)
	case res.DeadLettered:
		p.deadLetter(ch, d, env, res.Err, attempt)
	case res.Retry && cs.base.Err() != nil:
		_ = d.Nack(false, true)
	case res.Retry && attempt >= maxDeliveries:
		cs.d.DeadLetter(cs.base, c.handler, env, res.Err, attempt)
		p.deadLetter(ch, d, env, res.Err, attempt)
	case res.Retry:
		p.retry(d, env, attempt)
	default: // neither retried nor dead-lettered (unknown handler)
		cs.log.Error("handler failed without a retry; dropping the message", zap.String("consumer", c.name),
			zap.String("event_id", env.ID), zap.Error(res.Err))
		p.ack(d, env)
	}
}

func (p *partition) ack(d amqp.Delivery, env fxevents.Envelope) {
	if err := d.Ack(false); err != nil {
		p.c.cs.log.Warn("ack failed; the message will be delivered again", zap.String("queue", p.queue),
			zap.String("event_id", env.ID), zap.Error(err))
	}
}

// copyOf is d as a message to publish again, with extra headers.
func copyOf(d amqp.Delivery, extra amqp.Table) amqp.Publishing {
	h := make(amqp.Table, len(d.Headers)+len(extra))
	for k, v := range d.Headers {
		if k == "x-death" || k == "x-delivery-count" || strings.HasPrefix(k, "x-first-death") || strings.HasPrefix(k, "x-last-death") {
			continue
		}
		h[k] = v
	}
	for k, v := range extra {
		h[k] = v
	}
	return amqp.Publishing{
		Headers: h, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding, DeliveryMode: amqp.Persistent,
		CorrelationId: d.CorrelationId, MessageId: d.MessageId, Timestamp: d.Timestamp, Type: d.Type, AppId: d.AppId,
		Body: d.Body,
	}
}

// retry sends a copy to the delay queue of this attempt (the last level
// repeats), which dead-letters it back to the work queue after its TTL,
// then acknowledges d. If the copy is not confirmed, d goes back to the
// queue.
func (p *partition) retry(d amqp.Delivery, env fxevents.Envelope, attempt int) {
	c := p.c
	cs := c.cs
	level := min(attempt, len(c.delays))
	msg := copyOf(d, amqp.Table{HeaderConsumer: c.name, HeaderRetryLevel: strconv.Itoa(level), HeaderAttempt: int32(attempt + 1)})
	if err := p.publishCopy(cs.conn.RetryExchange(), p.queue, msg); err != nil {
		cs.log.Warn("send to the delay queue failed; the message goes back to its queue", zap.String("queue", p.queue),
			zap.String("event_id", env.ID), zap.Error(err))
		cs.sleep(cs.conn.cfg.ReconnectWait)
		_ = d.Nack(false, true)
		return
	}
	cs.conn.m.retried.WithLabelValues(c.name).Inc()
	p.ack(d, env)
}

// deadLetter copies d to the dead-letter queue (confirmed) with the error,
// then acknowledges it; if the copy fails, d goes back to the queue.
func (p *partition) deadLetter(_ *amqp.Channel, d amqp.Delivery, env fxevents.Envelope, cause error, attempts int) {
	c := p.c
	cs := c.cs
	dq := DeadQueueName(cs.conn.cfg.Exchange, c.name)
	msg := copyOf(d, amqp.Table{
		HeaderDeadHandler: c.handler, HeaderDeadError: truncate(strings.ReplaceAll(cause.Error(), "\n", " "), 1024),
		HeaderDeadAttempts: int32(attempts), HeaderDeadQueue: p.queue,
	})
	if err := p.publishCopy("", dq, msg); err != nil {
		cs.log.Error("copy to the dead-letter queue failed; the message goes back to its queue", zap.String("queue", dq),
			zap.String("event_id", env.ID), zap.Error(err))
		cs.sleep(cs.conn.cfg.ReconnectWait)
		_ = d.Nack(false, true)
		return
	}
	cs.conn.m.deadLetters.WithLabelValues(c.name).Inc()
	p.ack(d, env)
}

func (p *partition) publishCopy(exchange, key string, msg amqp.Publishing) error {
	cs := p.c.cs
	ctx, cancel := context.WithTimeout(context.Background(), cs.conn.cfg.PublishTimeout)
	defer cancel()
	_, err := cs.conn.publishOnce(ctx, exchange, []outgoing{{key: key, msg: msg}})
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// statsLoop refreshes the gauges and rebalances the partitions every
// RebalanceInterval (5s when rebalancing is off).
func (cs *Consumers) statsLoop() {
	every := cs.conn.cfg.RebalanceInterval
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cs.stopCh:
			return
		case <-t.C:
		}
		for _, c := range cs.list {
			c.stats(every)
		}
	}
}

// stats reads the partition queues' ready messages. With rebalancing on, a
// replica that is the active consumer (received a message within the
// interval) of more partitions than its share — partitions / replicas
// (the members queue's consumers), rounded up — hands the excess to the
// standby replicas: it closes those subscriptions (their unacknowledged
// messages go back to the front of the queue, and the broker activates
// the next consumer) and subscribes again at the back of the line.
func (c *consumer) stats(every time.Duration) {
	cs := c.cs
	conn := cs.conn.AMQP()
	if conn == nil || !cs.conn.connected() {
		return
	}
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer func() { _ = ch.Close() }()
	ready := 0
	for _, p := range c.parts {
		q, err := ch.QueueDeclarePassive(p.queue, true, false, false, false, nil)
		if err != nil {
			return
		}
		ready += q.Messages
	}
	cs.conn.m.ready.WithLabelValues(c.name).Set(float64(ready))
	since := time.Now().Add(-every).UnixNano()
	var active []*partition
	for _, p := range c.parts {
		if p.last.Load() >= since {
			active = append(active, p)
		}
	}
	cs.conn.m.active.WithLabelValues(c.name).Set(float64(len(active)))
	if cs.conn.cfg.RebalanceInterval <= 0 {
		return
	}
	m, err := ch.QueueDeclarePassive(c.members.queue, true, false, false, false, nil)
	if err != nil || m.Consumers < 2 {
		return
	}
	consumers := m.Consumers
	share := (len(c.parts) + consumers - 1) / consumers
	for _, p := range active[min(share, len(active)):] {
		select {
		case p.handoff <- struct{}{}:
			cs.conn.m.handoffs.WithLabelValues(c.name).Inc()
		default:
		}
	}
}
