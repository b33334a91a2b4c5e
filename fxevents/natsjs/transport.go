package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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

// publishOnce sends msgs asynchronously and waits for every PubAck; it
// returns the messages to send again and the last error.
func (c *Conn) publishOnce(ctx context.Context, msgs []*nats.Msg) ([]*nats.Msg, error) {
	js := c.JetStream()
	if js == nil {
		return msgs, ErrNotStarted
	}
	type sent struct {
		f     jetstream.PubAckFuture
		start time.Time
	}
	futs := make([]sent, 0, len(msgs))
	var failed []*nats.Msg
	var lastErr error
	for i, m := range msgs {
		start := time.Now()
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			failed = append(failed, msgs[i:]...)
			lastErr = err
			break
		}
		futs = append(futs, sent{f, start})
	}
	var okFailed []*nats.Msg
	for i, s := range futs {
		select {
		case ack := <-s.f.Ok():
			c.m.publishLatency.Observe(time.Since(s.start).Seconds())
			c.m.published.Inc()
			if ack.Duplicate {
				c.m.duplicates.Inc()
			}
		case err := <-s.f.Err():
			okFailed = append(okFailed, msgs[i])
			lastErr = err
		case <-ctx.Done():
			return append(msgs[i:len(futs):len(futs)], failed...), ctx.Err()
		}
	}
	if lastErr == nil {
		return nil, nil
	}
	return append(okFailed, failed...), lastErr
}

// message builds the NATS message of env on subject.
func (c *Conn) message(env fxevents.Envelope, subject string) *nats.Msg {
	h := make(nats.Header, 5+len(env.Metadata))
	for k, v := range env.Metadata {
		h[k] = []string{v}
	}
	h[jetstream.MsgIDHeader] = []string{env.ID}
	h[HeaderType] = []string{env.Type}
	if env.Source != "" {
		h[HeaderSource] = []string{env.Source}
	}
	if env.AggregateID != "" {
		h[HeaderAggregateID] = []string{env.AggregateID}
	}
	if !env.OccurredAt.IsZero() {
		h[HeaderOccurredAt] = []string{env.OccurredAt.UTC().Format(time.RFC3339Nano)}
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
