package natsjs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxevents"
)

// Headers carrying the envelope's fields; its Metadata entries travel as
// headers of their own names (traceparent, tracestate, baggage,
// correlation-id, content-type). Headers starting with "Nats-" or "Marty-"
// are not metadata.
const (
	HeaderType        = "Marty-Type"
	HeaderSource      = "Marty-Source"
	HeaderAggregateID = "Marty-Aggregate-Id"
	HeaderOccurredAt  = "Marty-Occurred-At"

	// Headers added to a dead-letter copy.
	HeaderDeadConsumer = "Marty-Dead-Consumer"
	HeaderDeadHandler  = "Marty-Dead-Handler"
	HeaderDeadError    = "Marty-Dead-Error"
	HeaderDeadAttempts = "Marty-Dead-Attempts"
	HeaderDeadSubject  = "Marty-Dead-Subject"
)

var _ fxevents.Transport = (*Conn)(nil)

// Publish implements fxevents.Transport: it publishes each envelope to
// "<prefix>.<type>" with Nats-Msg-Id = its id, and returns nil once
// JetStream acknowledged every one. Envelopes whose PubAck does not come
// (timeout, lost connection) are sent again (JetStream stores a message id
// once) until PublishTimeout has passed while connected; while disconnected
// it waits for the reconnection until ctx ends or the app stops. An error
// that means the stream is not there to answer (no PubAck, no responder:
// a cluster electing a stream leader or without quorum) matches
// fxevents.ErrTransportUnavailable, like a lost connection.
//
// Messages are sent in order on one connection, so JetStream stores them in
// order; only a message sent again after a failure can land after messages
// that followed it.
func (c *Conn) Publish(ctx context.Context, envs ...fxevents.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	msgs := make([]*nats.Msg, len(envs))
	for i, env := range envs {
		if !validSubject(env.Type) {
			return fmt.Errorf("natsjs: event type %q is not a valid subject suffix (dot-separated tokens, no spaces or wildcards)", env.Type)
		}
		msgs[i] = c.message(env, c.Subject(env.Type))
	}
	var firstFail time.Time
	wait := c.cfg.ReconnectWait
	for {
		if err := c.waitConnected(ctx); err != nil {
			return err
		}
		failed, err := c.publishOnce(ctx, msgs)
		if err == nil {
			return nil
		}
		lost := errors.Is(err, nats.ErrDisconnected) || errors.Is(err, nats.ErrConnectionReconnecting) || !c.connected()
		if ctx.Err() != nil {
			if lost {
				err = fmt.Errorf("%w: %w", fxevents.ErrTransportUnavailable, err)
			}
			return fmt.Errorf("natsjs: publish %d events to stream %s: %w", len(failed), c.cfg.Stream, err)
		}
		if !lost {
			if firstFail.IsZero() {
				firstFail = time.Now()
			} else if time.Since(firstFail) >= c.cfg.PublishTimeout {
				if streamUnavailable(err) {
					err = fmt.Errorf("%w: %w", fxevents.ErrTransportUnavailable, err)
				}
				return fmt.Errorf("natsjs: publish %d events to stream %s on %s: still failing after %s: %w",
					len(failed), c.cfg.Stream, c.url, c.cfg.PublishTimeout, err)
			}
		}
		c.m.resent.Add(float64(len(failed)))
		c.log.Debug("resending unacknowledged events", zap.Int("events", len(failed)), zap.Error(err))
		msgs = failed
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("natsjs: publish %d events to stream %s: %w", len(failed), c.cfg.Stream, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, c.cfg.ReconnectMax)
	}
}

// streamUnavailable reports whether a publish failed because the stream
// did not answer (no PubAck in time, no responder: a cluster without a
// stream leader, quorum lost, the stream missing) or JetStream said it is
// temporarily unavailable, rather than because it refused the message.
// Publish then returns an error matching fxevents.ErrTransportUnavailable,
// so the outbox relay keeps the events without counting attempts.
func streamUnavailable(err error) bool {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && api.Code == 503
}

func (c *Conn) connected() bool {
	nc := c.NATS()
	return nc != nil && nc.IsConnected()
}

// pubBatch is one publishOnce call's window: its messages are sent with
// PublishMsgAsync and settled by the connection's PubAck handlers
// (acked, ackFailed), which count them down; the waiting publisher wakes
// once, when the last one is settled, instead of once per message.
type pubBatch struct {
	start time.Time
	done  chan struct{} // closed when left reaches 0

	mu      sync.Mutex
	left    int
	failed  []*nats.Msg
	lastErr error
	acked   int
	dups    int
}

// settle records the outcome of n messages of the batch (failed ones with
// err) and closes done after the last.
func (b *pubBatch) settle(n int, failed []*nats.Msg, err error, dup bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.failed = append(b.failed, failed...)
		b.lastErr = err
	} else {
		b.acked += n
		if dup {
			b.dups++
		}
	}
	b.left -= n
	if b.left == 0 {
		close(b.done)
	}
}

// track registers msgs as sent by b; untrack removes them and returns those
// that were still waiting for their PubAck.
func (c *Conn) track(b *pubBatch, msgs []*nats.Msg) {
	c.pendMu.Lock()
	for _, m := range msgs {
		c.pend[m] = pending{b: b}
	}
	c.pendMu.Unlock()
}

// sent records when m went out, for the publish latency.
func (c *Conn) sent(m *nats.Msg, at time.Time) {
	c.pendMu.Lock()
	if p, ok := c.pend[m]; ok && p.sent.IsZero() {
		p.sent = at
		c.pend[m] = p
	}
	c.pendMu.Unlock()
}

// pending is a message waiting for its PubAck: its window and when it was
// sent.
type pending struct {
	b    *pubBatch
	sent time.Time
}

func (c *Conn) untrack(msgs []*nats.Msg) []*nats.Msg {
	var waiting []*nats.Msg
	c.pendMu.Lock()
	for _, m := range msgs {
		if _, ok := c.pend[m]; ok {
			delete(c.pend, m)
			waiting = append(waiting, m)
		}
	}
	c.pendMu.Unlock()
	return waiting
}

// owner removes m from the messages waiting for a PubAck and returns it
// (a nil batch when its publisher gave up on it).
func (c *Conn) owner(m *nats.Msg) pending {
	c.pendMu.Lock()
	p := c.pend[m]
	delete(c.pend, m)
	c.pendMu.Unlock()
	return p
}

// acked is the JetStream context's PubAck handler.
func (c *Conn) acked(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	if p := c.owner(m); p.b != nil {
		sent := p.sent
		if sent.IsZero() { // the PubAck came before sent recorded it
			sent = p.b.start
		}
		c.m.publishLatency.Observe(time.Since(sent).Seconds())
		p.b.settle(1, nil, nil, ack != nil && ack.Duplicate)
	}
}

// ackFailed is the JetStream context's handler of a publish that got no
// PubAck: an error reply, the PublishTimeout, a lost connection.
func (c *Conn) ackFailed(_ jetstream.JetStream, m *nats.Msg, err error) {
	if p := c.owner(m); p.b != nil {
		p.b.settle(1, []*nats.Msg{m}, err, false)
	}
}

// publishOnce sends msgs asynchronously, as one window, and waits until
// JetStream settled every one (the PubAck handlers count them down); it
// returns the messages to send again and the last error.
func (c *Conn) publishOnce(ctx context.Context, msgs []*nats.Msg) ([]*nats.Msg, error) {
	js := c.JetStream()
	if js == nil {
		return msgs, ErrNotStarted
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	b := &pubBatch{start: time.Now(), done: make(chan struct{}), left: len(msgs)}
	c.track(b, msgs)
	for i, m := range msgs {
		at := time.Now()
		if _, err := js.PublishMsgAsync(m); err != nil {
			// Not sent: no handler will settle these.
			unsent := c.untrack(msgs[i:])
			b.settle(len(unsent), unsent, err, false)
			break
		}
		c.sent(m, at)
	}
	select {
	case <-b.done:
	case <-ctx.Done():
		// Late PubAcks find nothing to settle; the caller sends the
		// messages again (JetStream stores a Nats-Msg-Id once).
		waiting := c.untrack(msgs)
		b.mu.Lock()
		failed := append(slices.Clone(b.failed), waiting...)
		b.mu.Unlock()
		return failed, ctx.Err()
	}
	c.m.published.Add(float64(b.acked))
	if b.dups > 0 {
		c.m.duplicates.Add(float64(b.dups))
	}
	if b.lastErr == nil {
		return nil, nil
	}
	return b.failed, b.lastErr
}

// message builds the NATS message of env on subject.
func (c *Conn) message(env fxevents.Envelope, subject string) *nats.Msg {
	n := 5 + len(env.Metadata)
	h := make(nats.Header, n)
	vals := make([]string, 0, n) // one allocation for every header's value
	set := func(k, v string) {
		vals = append(vals, v)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	for k, v := range env.Metadata {
		set(k, v)
	}
	set(jetstream.MsgIDHeader, env.ID)
	set(HeaderType, env.Type)
	if env.Source != "" {
		set(HeaderSource, env.Source)
	}
	if env.AggregateID != "" {
		set(HeaderAggregateID, env.AggregateID)
	}
	if !env.OccurredAt.IsZero() {
		set(HeaderOccurredAt, env.OccurredAt.UTC().Format(time.RFC3339Nano))
	}
	return &nats.Msg{Subject: subject, Data: env.Payload, Header: h}
}

// Envelope decodes a JetStream message published by Publish back into its
// envelope. A message published by another producer gets its type from the
// subject and, without a Nats-Msg-Id, the id "<stream>:<sequence>".
func (c *Conn) Envelope(msg jetstream.Msg) (fxevents.Envelope, error) {
	return decodeEnvelope(c.cfg.SubjectPrefix, msg)
}

func decodeEnvelope(prefix string, msg jetstream.Msg) (fxevents.Envelope, error) {
	h := msg.Headers()
	env := fxevents.Envelope{
		ID:          first(h, jetstream.MsgIDHeader),
		Type:        first(h, HeaderType),
		Source:      first(h, HeaderSource),
		AggregateID: first(h, HeaderAggregateID),
		Payload:     msg.Data(),
	}
	if env.Type == "" {
		env.Type = strings.TrimPrefix(msg.Subject(), prefix+".")
	}
	if env.ID == "" {
		md, err := msg.Metadata()
		if err != nil {
			return env, fmt.Errorf("natsjs: message on %s has no %s and no metadata: %w", msg.Subject(), jetstream.MsgIDHeader, err)
		}
		env.ID = md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	if at := first(h, HeaderOccurredAt); at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return env, fmt.Errorf("natsjs: message %s: bad %s %q: %w", env.ID, HeaderOccurredAt, at, err)
		}
		env.OccurredAt = t
	}
	for k, v := range h {
		if len(v) == 0 || strings.HasPrefix(k, "Nats-") || strings.HasPrefix(k, "Marty-") {
			continue
		}
		if env.Metadata == nil {
			env.Metadata = make(map[string]string, len(h))
		}
		env.Metadata[k] = v[0]
	}
	return env, nil
}

func first(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
