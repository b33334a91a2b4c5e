package fxevents

import (
	"context"
	"sync"
	"time"
)

// ctxInfo is what fxevents keeps in a context: one value for both, since
// the dispatcher sets them on every event.
type ctxInfo struct {
	correlationID string
	codec         Codec
}

type ctxInfoKey struct{}

func infoFrom(ctx context.Context) *ctxInfo {
	i, _ := ctx.Value(ctxInfoKey{}).(*ctxInfo)
	return i
}

// WithCorrelationID returns ctx carrying a correlation id: events published
// with it carry it in their metadata. Handlers run with the correlation id of
// the event they handle, so the events they publish join the same chain.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	i := &ctxInfo{correlationID: id}
	if prev := infoFrom(ctx); prev != nil {
		i.codec = prev.codec
	}
	return context.WithValue(ctx, ctxInfoKey{}, i)
}

// CorrelationID returns the correlation id in ctx, or "".
func CorrelationID(ctx context.Context) string {
	if i := infoFrom(ctx); i != nil {
		return i.correlationID
	}
	return ""
}

// WithCodec returns ctx carrying codec; the dispatcher runs handlers with its
// codec so HandlerFunc decodes with it.
func WithCodec(ctx context.Context, c Codec) context.Context {
	i := &ctxInfo{codec: c}
	if prev := infoFrom(ctx); prev != nil {
		i.correlationID = prev.correlationID
	}
	return context.WithValue(ctx, ctxInfoKey{}, i)
}

// CodecFrom returns the codec in ctx, or DefaultCodec.
func CodecFrom(ctx context.Context) Codec {
	if i := infoFrom(ctx); i != nil && i.codec != nil {
		return i.codec
	}
	return defaultCodec{}
}

// timeoutCtx is a context with a deadline whose timer is armed only when
// someone asks for Done or Err. Most handlers never do, and a timer per
// event costs more than handling a small event; a handler that waits on
// ctx.Done() gets the same behaviour as context.WithDeadline.
type timeoutCtx struct {
	context.Context
	deadline time.Time // zero: none
	info     ctxInfo
	inbox    *inbox

	mu         sync.Mutex
	done       chan struct{} // nil until armed
	err        error
	timer      *time.Timer
	stopParent func() bool
	cancelled  bool
}

// handlerContext returns the context a handler runs in: parent with the
// event's correlation id and codec and, unless deadline is zero, a deadline.
// It is one allocation where context.WithValue and WithDeadline make four.
func handlerContext(parent context.Context, info ctxInfo, deadline time.Time) *timeoutCtx {
	return &timeoutCtx{Context: parent, deadline: deadline, info: info}
}

func (c *timeoutCtx) Value(key any) any {
	switch key.(type) {
	case ctxInfoKey:
		return &c.info
	case inboxKey:
		if c.inbox != nil {
			return c.inbox
		}
	}
	return c.Context.Value(key)
}

func (c *timeoutCtx) Deadline() (time.Time, bool) {
	d, ok := c.Context.Deadline()
	if c.deadline.IsZero() || (ok && d.Before(c.deadline)) {
		return d, ok
	}
	return c.deadline, true
}

func (c *timeoutCtx) Done() <-chan struct{} {
	if c.deadline.IsZero() {
		return c.Context.Done()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked()
	return c.done
}

func (c *timeoutCtx) Err() error {
	if c.deadline.IsZero() {
		return c.Context.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armLocked()
	return c.err
}

func (c *timeoutCtx) armLocked() {
	if c.done != nil {
		return
	}
	c.done = make(chan struct{})
	if c.cancelled {
		c.fireLocked(context.Canceled)
		return
	}
	if err := c.Context.Err(); err != nil {
		c.fireLocked(err)
		return
	}
	d := time.Until(c.deadline)
	if d <= 0 {
		c.fireLocked(context.DeadlineExceeded)
		return
	}
	c.timer = time.AfterFunc(d, func() { c.fire(context.DeadlineExceeded) })
	c.stopParent = context.AfterFunc(c.Context, func() { c.fire(c.Context.Err()) })
}

func (c *timeoutCtx) fire(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fireLocked(err)
}

func (c *timeoutCtx) fireLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	close(c.done)
}

// cancel releases the timer; the context reports Canceled afterwards.
func (c *timeoutCtx) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelled = true
	if c.done != nil {
		c.fireLocked(context.Canceled)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.stopParent != nil {
		c.stopParent()
	}
}
