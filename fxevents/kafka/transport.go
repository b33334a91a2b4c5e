package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/martyfx/martyfx/fxevents"
)

// Record headers carrying the envelope's fields; its Metadata entries
// (traceparent, tracestate, baggage, correlation-id, content-type) travel
// as headers of their own names. Headers starting with "marty-" are not
// metadata.
const (
	HeaderEventID     = "marty-event-id"
	HeaderType        = "marty-type"
	HeaderSource      = "marty-source"
	HeaderAggregateID = "marty-aggregate-id"
	HeaderOccurredAt  = "marty-occurred-at"

	// Headers added to a dead-letter copy.
	HeaderDeadGroup     = "marty-dead-group"
	HeaderDeadHandler   = "marty-dead-handler"
	HeaderDeadError     = "marty-dead-error"
	HeaderDeadAttempts  = "marty-dead-attempts"
	HeaderDeadTopic     = "marty-dead-topic"
	HeaderDeadPartition = "marty-dead-partition"
	HeaderDeadOffset    = "marty-dead-offset"
)

var _ fxevents.Transport = (*Conn)(nil)

// Publish implements fxevents.Transport: each envelope becomes a record of
// topic "<prefix>.<type>" (created first when missing, see EnsureTopics)
// keyed by its aggregate id, so an aggregate's events share a partition
// and stay in order, with the event id and trace context in headers. It
// returns nil once the brokers acknowledged every record (acks=all, the
// idempotent producer: a retried batch is stored once). An unreachable or
// unanswering cluster gives an error matching
// fxevents.ErrTransportUnavailable: the outbox relay then keeps the events.
func (c *Conn) Publish(ctx context.Context, envs ...fxevents.Envelope) error {
	if len(envs) == 0 {
		return nil
	}
	cl := c.Client()
	if cl == nil {
		return ErrNotStarted
	}
	recs := make([]*kgo.Record, len(envs))
	var topics []string
	seen := map[string]bool{}
	for i, env := range envs {
		if !validTopic(env.Type) {
			return fmt.Errorf("kafka: event type %q is not a valid topic suffix (letters, digits, '.', '_', '-')", env.Type)
		}
		t := c.Topic(env.Type)
		if !seen[t] {
			seen[t] = true
			topics = append(topics, t)
		}
		recs[i] = record(env, t)
	}
	if err := c.EnsureTopics(ctx, topics...); err != nil {
		return err
	}
	start := time.Now()
	results := cl.ProduceSync(ctx, recs...)
	var failed int
	var firstErr error
	for _, r := range results {
		if r.Err != nil {
			failed++
			if firstErr == nil {
				firstErr = r.Err
			}
			continue
		}
		c.m.published.WithLabelValues(r.Record.Topic).Inc()
	}
	c.m.publishLatency.Observe(time.Since(start).Seconds())
	if firstErr != nil {
		c.m.publishFailed.Add(float64(failed))
		if errors.Is(firstErr, kgo.ErrRecordTimeout) || errors.Is(firstErr, context.Canceled) || errors.Is(firstErr, context.DeadlineExceeded) {
			c.resetProducer(cl)
		}
		return fmt.Errorf("kafka: publish %d of %d events to %s: %w", failed, len(recs), c.cfg.Brokers, unavailable(firstErr))
	}
	return nil
}

// record builds the Kafka record of env on topic.
func record(env fxevents.Envelope, topic string) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, 5+len(env.Metadata))
	h = append(h, kgo.RecordHeader{Key: HeaderEventID, Value: []byte(env.ID)}, kgo.RecordHeader{Key: HeaderType, Value: []byte(env.Type)})
	if env.Source != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderSource, Value: []byte(env.Source)})
	}
	if env.AggregateID != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderAggregateID, Value: []byte(env.AggregateID)})
	}
	if !env.OccurredAt.IsZero() {
		h = append(h, kgo.RecordHeader{Key: HeaderOccurredAt, Value: []byte(env.OccurredAt.UTC().Format(time.RFC3339Nano))})
	}
	for k, v := range env.Metadata {
		h = append(h, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	r := &kgo.Record{Topic: topic, Value: env.Payload, Headers: h}
	if env.AggregateID != "" {
		r.Key = []byte(env.AggregateID)
	} else {
		r.Key = []byte(env.ID) // spread, and a stable partition for a re-sent event
	}
	if !env.OccurredAt.IsZero() {
		r.Timestamp = env.OccurredAt
	}
	return r
}

// Envelope decodes a record published by Publish back into its envelope.
// A record of another producer gets its type from the topic (after the
// prefix) and, without an event id header, the id
// "<topic>:<partition>:<offset>".
func (c *Conn) Envelope(r *kgo.Record) (fxevents.Envelope, error) {
	return decodeEnvelope(c.cfg.TopicPrefix, r)
}

func decodeEnvelope(prefix string, r *kgo.Record) (fxevents.Envelope, error) {
	env := fxevents.Envelope{Payload: r.Value}
	var at string
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderEventID:
			env.ID = string(h.Value)
		case HeaderType:
			env.Type = string(h.Value)
		case HeaderSource:
			env.Source = string(h.Value)
		case HeaderAggregateID:
			env.AggregateID = string(h.Value)
		case HeaderOccurredAt:
			at = string(h.Value)
		default:
			if strings.HasPrefix(h.Key, "marty-") {
				continue
			}
			if env.Metadata == nil {
				env.Metadata = make(map[string]string, len(r.Headers))
			}
			env.Metadata[h.Key] = string(h.Value)
		}
	}
	if env.Type == "" {
		env.Type = strings.TrimPrefix(r.Topic, prefix+".")
	}
	if env.ID == "" {
		env.ID = fmt.Sprintf("%s:%d:%d", r.Topic, r.Partition, r.Offset)
	}
	if at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return env, fmt.Errorf("kafka: record %s: bad %s %q: %w", env.ID, HeaderOccurredAt, at, err)
		}
		env.OccurredAt = t
	} else if env.OccurredAt.IsZero() && !r.Timestamp.IsZero() {
		env.OccurredAt = r.Timestamp
	}
	if env.Type == "" {
		return env, errors.New("kafka: record without an event type")
	}
	return env, nil
}
