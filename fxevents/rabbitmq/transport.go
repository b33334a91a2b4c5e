package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxevents"
)

// Headers carrying the envelope's fields that AMQP properties do not have;
// the envelope id is the message_id, its type the type property, its
// source the app_id. Its Metadata entries (traceparent, tracestate,
// baggage, correlation-id, content-type) travel as headers of their own
// names. Headers starting with "x-" or "marty-" are not metadata.
const (
	HeaderAggregateID = "x-marty-aggregate-id"
	HeaderOccurredAt  = "x-marty-occurred-at"
	// HeaderAttempt is the attempt number of the delivery a retry copy
	// makes (2 for the first retry).
	HeaderAttempt = "x-marty-attempt"
	// HeaderConsumer and HeaderRetryLevel route a retry copy, through the
	// retry exchange, to its consumer's delay queue (not "x-" headers: a
	// headers exchange ignores those).
	HeaderConsumer   = "marty-retry-consumer"
	HeaderRetryLevel = "marty-retry-level"

	// Headers of a dead-letter queue message.
	HeaderDeadHandler  = "x-marty-dead-handler"
	HeaderDeadError    = "x-marty-dead-error"
	HeaderDeadAttempts = "x-marty-dead-attempts"
	HeaderDeadQueue    = "x-marty-dead-queue"
)

var _ fxevents.Transport = (*Conn)(nil)

// Partition returns the partition of an aggregate id: FNV-1a mod
// partitions. Events without an aggregate id are spread by their id.
func Partition(aggregateID string, partitions int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(aggregateID))
	return int(h.Sum32() % uint32(partitions))
}

// RoutingKey is the routing key of an event type's partition:
// "<type>.<partition>".
func RoutingKey(eventType string, partition int) string {
	return eventType + "." + strconv.Itoa(partition)
}

func (c *Conn) partitionOf(env fxevents.Envelope) int {
	if env.AggregateID != "" {
		return Partition(env.AggregateID, c.cfg.Partitions)
	}
	return Partition(env.ID, c.cfg.Partitions)
}

// Publish implements fxevents.Transport: it publishes each envelope,
// persistent, to the exchange with routing key "<type>.<partition>"
// (partition = hash of the aggregate id) and message_id = the envelope id,
// and returns nil once the broker confirmed every one (publisher
// confirms: a quorum queue confirms once a majority stored the message).
// Envelopes the broker did not confirm (nack, lost connection) are sent
// again, while connected, until PublishTimeout; while disconnected Publish
// waits for the recovery until ctx ends or the app stops, and then fails
// with an error matching fxevents.ErrTransportUnavailable.
//
// The envelopes of one call go in order on one channel, so a queue gets an
// aggregate's events in order; only an envelope sent again after a failure
// can land after ones that followed it.
func (c *Conn) Publish(ctx context.Context, envs ...fxevents.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	msgs := make([]outgoing, len(envs))
	for i, env := range envs {
		if env.Type == "" || len(env.Type) > 240 {
			return fmt.Errorf("rabbitmq: event %s: type %q must have 1 to 240 bytes (it is part of the routing key)", env.ID, env.Type)
		}
		msgs[i] = outgoing{key: RoutingKey(env.Type, c.partitionOf(env)), msg: message(env)}
	}
	var firstFail time.Time
	for {
		if err := c.waitConnected(ctx); err != nil {
			return fmt.Errorf("rabbitmq: publish %d events: %w", len(msgs), err)
		}
		failed, err := c.publishOnce(ctx, c.cfg.Exchange, msgs)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("rabbitmq: publish %d events to %s: %w: %w", len(failed), c.host, fxevents.ErrTransportUnavailable, ctx.Err())
		}
		if c.connected() {
			if firstFail.IsZero() {
				firstFail = time.Now()
			} else if time.Since(firstFail) >= c.cfg.PublishTimeout {
				return fmt.Errorf("rabbitmq: publish %d events to exchange %s on %s: still failing after %s: %w",
					len(failed), c.cfg.Exchange, c.host, c.cfg.PublishTimeout, err)
			}
		}
		c.m.resent.Add(float64(len(failed)))
		c.log.Debug("resending unconfirmed events", zap.Int("events", len(failed)), zap.Error(err))
		msgs = failed
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("rabbitmq: publish %d events: %w: %w", len(failed), fxevents.ErrTransportUnavailable, ctx.Err())
		case <-t.C:
		}
	}
}

type outgoing struct {
	key string
	msg amqp.Publishing
}

// publishOnce sends msgs on one publishing channel and waits for their
// confirmations; it returns the messages to send again and the last error.
func (c *Conn) publishOnce(ctx context.Context, exchange string, msgs []outgoing) ([]outgoing, error) {
	c.mu.Lock()
	pubs := c.pubs
	c.mu.Unlock()
	if pubs == nil {
		return msgs, ErrNotStarted
	}
	var ch *amqp.Channel
	select {
	case ch = <-pubs:
	case <-ctx.Done():
		return msgs, ctx.Err()
	}
	defer func() { pubs <- ch }()
	start := time.Now()
	dcs := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	var failed []outgoing
	var lastErr error
	for i, o := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, o.key, false, false, o.msg)
		if err != nil {
			failed = append(failed, msgs[i:]...)
			lastErr = err
			break
		}
		dcs = append(dcs, dc)
	}
	var nacked []outgoing
	for i, dc := range dcs {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return append(msgs[i:len(dcs):len(dcs)], failed...), err
		}
		if !ok {
			nacked = append(nacked, msgs[i])
			lastErr = errors.New("the broker did not confirm the message (nack or lost connection)")
			continue
		}
		c.m.published.Inc()
	}
	c.m.publishLatency.Observe(time.Since(start).Seconds())
	if lastErr == nil {
		return nil, nil
	}
	if errors.Is(lastErr, amqp.ErrClosed) && c.connected() {
		// The channel was closed for good (a channel error the client did
		// not recover): replace it.
		if conn := c.AMQP(); conn != nil {
			if nch, err := c.publishChannel(conn); err == nil {
				_ = ch.Close()
				ch = nch
			}
		}
	}
	return append(nacked, failed...), lastErr
}

// message builds the AMQP message of env.
func message(env fxevents.Envelope) amqp.Publishing {
	h := make(amqp.Table, 2+len(env.Metadata))
	for k, v := range env.Metadata {
		h[k] = v
	}
	if env.AggregateID != "" {
		h[HeaderAggregateID] = env.AggregateID
	}
	p := amqp.Publishing{
		Headers:      h,
		DeliveryMode: amqp.Persistent,
		MessageId:    env.ID,
		Type:         env.Type,
		AppId:        env.Source,
		ContentType:  env.ContentType(),
		Body:         env.Payload,
	}
	if corr := env.CorrelationID(); corr != "" {
		p.CorrelationId = corr
	}
	if !env.OccurredAt.IsZero() {
		p.Timestamp = env.OccurredAt
		h[HeaderOccurredAt] = env.OccurredAt.UTC().Format(time.RFC3339Nano)
	}
	return p
}

// Envelope decodes a delivery published by Publish back into its envelope.
// A message of another producer without a message_id gets none and is
// dead-lettered by the consumers.
func Envelope(d amqp.Delivery) (fxevents.Envelope, error) {
	env := fxevents.Envelope{ID: d.MessageId, Type: d.Type, Source: d.AppId, Payload: d.Body}
	if s, ok := d.Headers[HeaderAggregateID].(string); ok {
		env.AggregateID = s
	}
	if env.ID == "" {
		return env, errors.New("rabbitmq: message without message_id (the event id)")
	}
	if env.Type == "" {
		return env, fmt.Errorf("rabbitmq: message %s without type (the event type)", env.ID)
	}
	if at, ok := d.Headers[HeaderOccurredAt].(string); ok && at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return env, fmt.Errorf("rabbitmq: message %s: bad %s %q: %w", env.ID, HeaderOccurredAt, at, err)
		}
		env.OccurredAt = t
	} else if !d.Timestamp.IsZero() {
		env.OccurredAt = d.Timestamp
	}
	for k, v := range d.Headers {
		s, ok := v.(string)
		if !ok || strings.HasPrefix(k, "x-") || strings.HasPrefix(k, "marty-") {
			continue
		}
		if env.Metadata == nil {
			env.Metadata = make(map[string]string, len(d.Headers))
		}
		env.Metadata[k] = s
	}
	return env, nil
}
