package kafka

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

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// GroupName is the consumer group of a service's handler: the service and
// handler names joined by "_", every character other than letters,
// digits, '-' and '_' replaced by '_'. Replicas of a service share it
// (they split the partitions); other services have their own, so each
// receives every event.
func GroupName(service, handler string) string {
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
// are the Conn's Config and the Dispatcher's.
type ConsumersOptions struct {
	// Conn is the connection whose brokers, TLS, SASL and metrics the
	// consumers use (required).
	Conn *Conn
	// Dispatcher runs the handlers (required): one consumer group per
	// handler.
	Dispatcher *fxevents.Dispatcher
	// Info names the service: its groups are GroupName(Info.Name,
	// handler). Zero value: the binary's name.
	Info fxcore.ServiceInfo
	// Logger receives the consumers' logs; nil: zap.NewNop().
	Logger *zap.Logger
	// Stopping is the app's stop sequence, begun when the consumers stop;
	// nil: none.
	Stopping *fxcore.Stopping
	// Workers is how many partitions a handler's consumer works on at once
	// (a partition's records always one after another). 0: the
	// dispatcher's Config.Workers.
	Workers int
	// MaxDeliveries is how many attempts a record gets before it is
	// dead-lettered. 0: the Conn's Config.MaxDeliveries, or else the
	// dispatcher's Config.MaxAttempts (it cannot be more).
	MaxDeliveries int
}

// Consumers runs one consumer group member per handler of a dispatcher.
// Each polls its handler's topics, runs every record through
// Dispatcher.HandleOne (retrying in place with backoff, which holds the
// record's partition and keeps an aggregate in order), dead-letters what
// still fails, and commits a partition's offsets only after its records'
// effects: at-least-once delivery, exactly-once effect with the inbox.
// Rebalances wait (BlockRebalanceOnPoll) until the polled records are
// settled and committed, so a revoked partition is handed over with
// nothing in flight.
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
	poll     context.Context // ends when the stop begins
	stopPoll context.CancelFunc
	stopping atomic.Bool
	wg       sync.WaitGroup
	started  bool
}

type consumer struct {
	cs      *Consumers
	handler string
	group   string
	topics  []string
	cl      *kgo.Client
}

// NewConsumers returns the consumers of the dispatcher's handlers (not
// started: call Start, then Stop).
func NewConsumers(opts ConsumersOptions) (*Consumers, error) {
	conn, d := opts.Conn, opts.Dispatcher
	if conn == nil || d == nil {
		return nil, errors.New("kafka: NewConsumers needs a Conn and a Dispatcher")
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
		return nil, fmt.Errorf("kafka: MARTY_KAFKA_MAX_DELIVERIES=%d is more than MARTY_EVENTS_MAX_ATTEMPTS=%d, where the dispatcher dead-letters: raise MARTY_EVENTS_MAX_ATTEMPTS too, or leave MARTY_KAFKA_MAX_DELIVERIES at 0",
			opts.MaxDeliveries, ev.MaxAttempts)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	service := opts.Info.Name
	if service == "" {
		service = binaryName()
	}
	cs := &Consumers{conn: conn, d: d, o: opts, service: service, log: opts.Logger.Named("kafka.consumer"), sequence: opts.Stopping}
	cs.base, cs.cancel = context.WithCancel(context.Background())
	cs.poll, cs.stopPoll = context.WithCancel(context.Background())
	for _, h := range d.Handlers() {
		c := &consumer{cs: cs, handler: h.Name, group: GroupName(service, h.Name)}
		for _, t := range h.EventTypes {
			if !validTopic(t) {
				cs.cancel()
				cs.stopPoll()
				return nil, fmt.Errorf("kafka: handler %s: event type %q is not a valid topic suffix (letters, digits, '.', '_', '-')", h.Name, t)
			}
			c.topics = append(c.topics, conn.Topic(t))
		}
		cs.list = append(cs.list, c)
	}
	return cs, nil
}

// Groups lists the consumer group names, in handler order.
func (cs *Consumers) Groups() []string {
	out := make([]string, len(cs.list))
	for i, c := range cs.list {
		out[i] = c.group
	}
	return out
}

// Start ensures the handlers' topics (and dead-letter topics), joins the
// groups and starts consuming.
func (cs *Consumers) Start(ctx context.Context) error {
	base, err := cs.conn.baseOptions()
	if err != nil {
		return err
	}
	for _, c := range cs.list {
		if err := cs.conn.EnsureTopics(ctx, append(append([]string{}, c.topics...), c.deadLetterTopic())...); err != nil {
			cs.closeClients()
			return err
		}
		opts := append(append([]kgo.Opt{}, base...),
			kgo.ConsumerGroup(c.group),
			kgo.ConsumeTopics(c.topics...),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
			kgo.BlockRebalanceOnPoll(),
			kgo.SessionTimeout(cs.conn.cfg.SessionTimeout),
			kgo.RebalanceTimeout(cs.conn.cfg.RebalanceTimeout),
			kgo.OnPartitionsAssigned(c.assigned),
			kgo.OnPartitionsRevoked(c.revoked),
			kgo.OnPartitionsLost(c.revoked),
		)
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			cs.closeClients()
			return fmt.Errorf("kafka: consumer %s: %w", c.group, err)
		}
		c.cl = cl
	}
	cs.started = true
	for _, c := range cs.list {
		cs.wg.Go(c.run)
	}
	return nil
}

func (cs *Consumers) closeClients() {
	for _, c := range cs.list {
		if c.cl != nil {
			c.cl.Close()
			c.cl = nil
		}
	}
}

// Stop begins the app's stop sequence, stops polling and settles the
// records already polled until ctx ends; then it cancels the running
// handlers, commits what was settled and leaves the groups: what was not
// settled is consumed again by the member that gets the partition.
func (cs *Consumers) Stop(ctx context.Context) error {
	if cs.sequence != nil {
		cs.sequence.Begin()
	}
	if !cs.started {
		cs.cancel()
		cs.stopPoll()
		return nil
	}
	if cs.stopping.Swap(true) {
		return nil
	}
	cs.stopPoll()
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		cs.cancel() // handlers see their context end; the rest is not committed
		select {
		case <-done:
			err = fmt.Errorf("kafka: stop consumers: records not settled are left for redelivery: %w", ctx.Err())
		case <-time.After(2 * time.Second):
			err = fmt.Errorf("kafka: stop consumers: handlers did not return after their context ended: %w", ctx.Err())
		}
	}
	cs.cancel()
	for _, c := range cs.list {
		c.cl.CloseAllowingRebalance() // leaves the group
	}
	return err
}

func (c *consumer) deadLetterTopic() string {
	return c.cs.conn.cfg.deadLetterPrefix() + "." + c.group
}

func (c *consumer) assigned(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	c.cs.conn.m.rebalances.WithLabelValues(c.group).Inc()
	c.cs.log.Debug("partitions assigned", zap.String("group", c.group), zap.Any("partitions", parts))
}

// revoked runs once the polled records are settled and committed (the
// rebalance waits for AllowRebalance): it drops the partitions' lag.
func (c *consumer) revoked(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	c.cs.conn.m.rebalances.WithLabelValues(c.group).Inc()
	for t, ps := range parts {
		for _, p := range ps {
			c.cs.conn.m.lag.DeleteLabelValues(c.group, t, strconv.Itoa(int(p)))
		}
	}
	c.cs.log.Debug("partitions revoked", zap.String("group", c.group), zap.Any("partitions", parts))
}

// run polls, settles each batch partition by partition (Workers at once)
// and commits, then lets a waiting rebalance go on.
func (c *consumer) run() {
	cs := c.cs
	maxRecords := cs.conn.cfg.FetchMaxRecords
	for {
		fetches := c.cl.PollRecords(cs.poll, maxRecords)
		if cs.poll.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			return
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				cs.log.Warn("fetch", zap.String("group", c.group), zap.String("topic", t), zap.Int32("partition", p), zap.Error(err))
			}
		})
		var settled []*kgo.Record
		var mu sync.Mutex
		sem := make(chan struct{}, cs.o.Workers)
		var wg sync.WaitGroup
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if last := c.partition(p); last != nil {
					mu.Lock()
					settled = append(settled, last)
					mu.Unlock()
				}
			})
		})
		wg.Wait()
		if len(settled) > 0 {
			c.commit(settled)
		}
		if cs.base.Err() != nil {
			// Past the stop deadline: what was not settled must not be
			// skipped by a later poll.
			c.cl.AllowRebalance()
			return
		}
		c.cl.AllowRebalance()
	}
}

// commit commits the offsets after the settled records, retrying a failed
// commit a few times (a lost commit means redelivery, never loss).
func (c *consumer) commit(recs []*kgo.Record) {
	cs := c.cs
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), cs.conn.cfg.PublishTimeout)
		err = c.cl.CommitRecords(ctx, recs...)
		cancel()
		if err == nil {
			return
		}
		if !sleepCtx(cs.base, time.Duration(attempt)*100*time.Millisecond) {
			break
		}
	}
	cs.conn.m.commitFailed.WithLabelValues(c.group).Inc()
	cs.log.Warn("commit offsets failed; the records will be delivered again", zap.String("group", c.group), zap.Error(err))
}

// partition settles p's records in order and returns the last settled one
// (nil when none was: stopped before the first).
func (c *consumer) partition(p kgo.FetchTopicPartition) *kgo.Record {
	var last *kgo.Record
	part := strconv.Itoa(int(p.Partition))
	for _, r := range p.Records {
		if !c.settle(r) {
			break
		}
		last = r
		c.cs.conn.m.consumed.WithLabelValues(c.group).Inc()
		c.cs.conn.m.lag.WithLabelValues(c.group, p.Topic, part).Set(float64(max(0, p.HighWatermark-r.Offset-1)))
	}
	return last
}

// settle runs the handler on r until it succeeds or is dead-lettered; it
// returns false when the stop deadline came first (r is then not
// committed and is delivered again).
func (c *consumer) settle(r *kgo.Record) bool {
	cs := c.cs
	env, err := decodeEnvelope(cs.conn.cfg.TopicPrefix, r)
	if err != nil {
		err = fxevents.Permanent(err)
		cs.d.DeadLetter(cs.base, c.handler, env, err, 1)
		return c.deadLetter(r, env, err, 1)
	}
	for attempt := 1; ; attempt++ {
		if cs.base.Err() != nil {
			return false
		}
		res := cs.d.HandleOne(cs.base, c.handler, env, attempt)
		switch {
		case res.Err == nil:
			return true
		case res.DeadLettered:
			return c.deadLetter(r, env, res.Err, attempt)
		case res.Retry && cs.base.Err() != nil:
			return false
		case res.Retry && attempt >= cs.o.MaxDeliveries:
			cs.d.DeadLetter(cs.base, c.handler, env, res.Err, attempt)
			return c.deadLetter(r, env, res.Err, attempt)
		case res.Retry && cs.poll.Err() != nil:
			return false // stopping: hand the record back rather than wait out its backoff
		case res.Retry:
			cs.conn.m.retried.WithLabelValues(c.group).Inc()
			if !sleepCtx(cs.base, c.delay(attempt, res.RetryAfter)) {
				return false
			}
		default: // an error neither retried nor dead-lettered (unknown handler)
			cs.log.Error("handler failed without a retry; skipping the record", zap.String("group", c.group),
				zap.String("event_id", env.ID), zap.Error(res.Err))
			return true
		}
	}
}

func (c *consumer) delay(attempt int, computed time.Duration) time.Duration {
	b := c.cs.conn.cfg.Backoff
	if len(b) == 0 {
		return computed
	}
	return b[min(attempt-1, len(b)-1)]
}

// deadLetter copies r to "<dead letter topic>.<group>" with the failure's
// headers, trying again (holding the partition) until the brokers took
// it or the stop deadline came (false: r is delivered again).
func (c *consumer) deadLetter(r *kgo.Record, env fxevents.Envelope, cause error, attempts int) bool {
	cs := c.cs
	dl := &kgo.Record{Topic: c.deadLetterTopic(), Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
		Headers: append(append([]kgo.RecordHeader{}, r.Headers...),
			kgo.RecordHeader{Key: HeaderDeadGroup, Value: []byte(c.group)},
			kgo.RecordHeader{Key: HeaderDeadHandler, Value: []byte(c.handler)},
			kgo.RecordHeader{Key: HeaderDeadError, Value: []byte(truncate(strings.ReplaceAll(cause.Error(), "\n", " "), 1024))},
			kgo.RecordHeader{Key: HeaderDeadAttempts, Value: []byte(strconv.Itoa(attempts))},
			kgo.RecordHeader{Key: HeaderDeadTopic, Value: []byte(r.Topic)},
			kgo.RecordHeader{Key: HeaderDeadPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
			kgo.RecordHeader{Key: HeaderDeadOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		)}
	wait := 100 * time.Millisecond
	for {
		cl := cs.conn.Client()
		if cl == nil {
			return false
		}
		ctx, cancel := context.WithTimeout(cs.base, cs.conn.cfg.PublishTimeout)
		err := cl.ProduceSync(ctx, dl).FirstErr()
		cancel()
		if errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			cs.conn.resetProducer(cl)
		}
		if err == nil {
			cs.conn.m.deadLetters.WithLabelValues(c.group).Inc()
			return true
		}
		cs.log.Error("copy to the dead-letter topic failed; retrying", zap.String("group", c.group),
			zap.String("topic", dl.Topic), zap.String("event_id", env.ID), zap.Error(err))
		if !sleepCtx(cs.base, wait) {
			return false
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
