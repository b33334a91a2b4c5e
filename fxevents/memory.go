package fxevents

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Bus publishes events.
type Bus interface {
	// Publish sends the events, in order, to every handler of their types
	// (or to the transport, or into the outbox). It returns once each event
	// is accepted: queued (memory), stored (outbox), accepted by the broker
	// (transport) or, in sync mode, handled by every handler.
	Publish(ctx context.Context, events ...Event) error
}

// MemoryBus is the in-process bus: each handler has a bounded queue split
// over its workers; an event goes to the worker its AggregateID hashes to
// (round robin without one), so one aggregate's events run in publish order
// and a slow handler never delays another. Queued events are lost if the
// process crashes: use the outbox for durability.
type MemoryBus struct {
	d         *Dispatcher
	cfg       Config
	log       *zap.Logger
	transport Transport
	queues    []*handlerQueue // by handlerEntry.idx

	mu      sync.RWMutex // Publish holds R while enqueueing; Stop takes W to close the queues
	closed  bool
	stopCh  chan struct{}
	stopOne sync.Once

	base    context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	abandon atomic.Bool
	started bool
	seed    maphash.Seed
}

type handlerQueue struct {
	e        *handlerEntry
	chans    []chan Envelope
	rr       atomic.Uint64
	inflight atomic.Int64
}

func (q *handlerQueue) depth() int {
	n := 0
	for _, c := range q.chans {
		n += len(c)
	}
	return n
}

func (q *handlerQueue) full() bool {
	for _, c := range q.chans {
		if len(c) == cap(c) {
			return true
		}
	}
	return false
}

// MemoryBusOptions are what NewMemoryBus takes; the bus's settings are the
// dispatcher's Config (queue size, workers, back pressure, sync).
type MemoryBusOptions struct {
	// Dispatcher runs the handlers (required).
	Dispatcher *Dispatcher
	// Transport, when set, receives every published envelope instead of
	// the local queues (its consumers call Dispatcher.HandleOne); nil:
	// the handlers run in this process.
	Transport Transport
	// Registerer receives the marty_events_queue_depth gauge; nil: it is
	// not registered.
	Registerer prometheus.Registerer
}

// NewMemoryBus returns the in-memory bus over opts.Dispatcher. Call Start
// before publishing and Stop to drain.
func NewMemoryBus(opts MemoryBusOptions) (*MemoryBus, error) {
	d := opts.Dispatcher
	if d == nil {
		return nil, errors.New("fxevents: NewMemoryBus needs a Dispatcher")
	}
	b := &MemoryBus{d: d, cfg: d.cfg, log: d.log, transport: opts.Transport, stopCh: make(chan struct{}), seed: maphash.MakeSeed()}
	b.base, b.cancel = context.WithCancel(context.Background())
	if opts.Transport == nil && !d.cfg.Sync {
		per := max(1, d.cfg.QueueSize/d.cfg.Workers)
		for _, e := range d.handlers {
			q := &handlerQueue{e: e, chans: make([]chan Envelope, d.cfg.Workers)}
			for i := range q.chans {
				q.chans[i] = make(chan Envelope, per)
			}
			b.queues = append(b.queues, q)
		}
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(gaugeCollector{
			desc: prometheus.NewDesc("marty_events_queue_depth", "Events waiting in a handler's queue (memory bus).", []string{"handler"}, nil),
			fn: func(emit func(float64, ...string)) {
				for name, n := range b.depths() {
					emit(float64(n), name)
				}
			},
		}); err != nil {
			b.cancel()
			return nil, fmt.Errorf("fxevents: register metrics: %w", err)
		}
	}
	return b, nil
}

// Start starts the workers. It never blocks and returns nil; calling it
// again does nothing.
func (b *MemoryBus) Start(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return nil
	}
	b.started = true
	for _, q := range b.queues {
		for _, ch := range q.chans {
			b.wg.Add(1)
			go b.work(q, ch)
		}
	}
	return nil
}

func (b *MemoryBus) work(q *handlerQueue, ch chan Envelope) {
	defer b.wg.Done()
	for env := range ch {
		if b.abandon.Load() {
			continue
		}
		q.inflight.Add(1)
		_ = b.d.run(b.base, q.e, env)
		q.inflight.Add(-1)
	}
}

// Publish implements Bus.
func (b *MemoryBus) Publish(ctx context.Context, events ...Event) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if b.transport != nil {
		return b.publishTransport(ctx, events)
	}
	var errs []error
	for _, ev := range events {
		span, env, err := b.d.startPublish(ctx, ev)
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		if b.cfg.Sync {
			herr := b.runSync(ctx, env)
			b.d.m.publishedFor(env.Type).Inc()
			endSpan(span, herr)
			if herr != nil {
				errs = append(errs, herr)
			}
			continue
		}
		if err := b.enqueue(ctx, env); err != nil {
			endSpan(span, err)
			return err
		}
		b.d.m.publishedFor(env.Type).Inc()
		span.End()
	}
	return errors.Join(errs...)
}

func (b *MemoryBus) runSync(ctx context.Context, env Envelope) error {
	var errs []error
	for _, e := range b.d.byType[env.Type] {
		if err := b.d.run(ctx, e, env); err != nil {
			errs = append(errs, fmt.Errorf("fxevents: handler %s on %s %s: %w", e.name, env.Type, env.ID, err))
		}
	}
	return errors.Join(errs...)
}

func (b *MemoryBus) publishTransport(ctx context.Context, events []Event) error {
	envs := make([]Envelope, 0, len(events))
	spans := make([]trace.Span, 0, len(events))
	for _, ev := range events {
		span, env, err := b.d.startPublish(ctx, ev)
		if err != nil {
			for _, s := range spans {
				endSpan(s, err)
			}
			return err
		}
		envs = append(envs, env)
		spans = append(spans, span)
	}
	err := b.transport.Publish(ctx, envs...)
	if err != nil {
		err = fmt.Errorf("fxevents: transport publish: %w", err)
	}
	for i, s := range spans {
		if err == nil {
			b.d.m.publishedFor(envs[i].Type).Inc()
		}
		endSpan(s, err)
	}
	return err
}

// enqueue puts env on every matching handler's queue, waiting for room or
// failing at once per the back-pressure mode.
func (b *MemoryBus) enqueue(ctx context.Context, env Envelope) error {
	for _, e := range b.d.byType[env.Type] {
		q := b.queues[e.idx]
		var ch chan Envelope
		if len(q.chans) == 1 {
			ch = q.chans[0]
		} else if env.AggregateID != "" {
			ch = q.chans[maphash.String(b.seed, env.AggregateID)%uint64(len(q.chans))]
		} else {
			ch = q.chans[q.rr.Add(1)%uint64(len(q.chans))]
		}
		select {
		case ch <- env:
			continue
		default:
		}
		if b.cfg.BackPressure == BackPressureFail {
			return fmt.Errorf("%w: handler %s (event %s %s)", ErrBufferFull, e.name, env.Type, env.ID)
		}
		select {
		case ch <- env:
		case <-ctx.Done():
			return fmt.Errorf("fxevents: wait for room in handler %s queue: %w", e.name, ctx.Err())
		case <-b.stopCh:
			return ErrClosed
		}
	}
	return nil
}

// depths returns each handler's queued event count, by handler name.
func (b *MemoryBus) depths() map[string]int {
	out := make(map[string]int, len(b.queues))
	for _, q := range b.queues {
		out[q.e.name] = q.depth()
	}
	return out
}

// fullQueues lists the handlers with a full worker queue right now.
func (b *MemoryBus) fullQueues() []string {
	var out []string
	for _, q := range b.queues {
		if q.full() {
			out = append(out, q.e.name)
		}
	}
	return out
}

// Stop stops accepting events and drains the queues until ctx ends; then it
// cancels the running handlers, logs and counts what is left (in
// marty_events_undelivered_total) and returns ctx's error.
func (b *MemoryBus) Stop(ctx context.Context) error {
	b.stopOne.Do(func() { close(b.stopCh) })
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		for _, q := range b.queues {
			for _, ch := range q.chans {
				close(ch)
			}
		}
	}
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	select {
	case <-done:
		b.cancel()
		return nil
	case <-ctx.Done():
	}
	b.abandon.Store(true)
	left := 0
	for _, q := range b.queues {
		n := q.depth() + int(q.inflight.Load())
		left += n
		if n > 0 {
			b.d.m.undelivered.WithLabelValues(q.e.name).Add(float64(n))
		}
	}
	b.cancel()
	b.log.Error("event bus stopped before its queues drained; queued events are lost (use the outbox for durability)",
		zap.Int("undelivered", left), zap.Error(ctx.Err()))
	return fmt.Errorf("fxevents: drain queues: %d events undelivered: %w", left, ctx.Err())
}
