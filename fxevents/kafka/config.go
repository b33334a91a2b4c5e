package kafka

import (
	"net"
	"strings"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// The values of Config.SASLMechanism.
const (
	SASLNone        = ""
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Config is the "kafka" section (MARTY_KAFKA_<FIELD>).
type Config struct {
	// Brokers are the seed brokers, host:port, comma-separated.
	Brokers string `koanf:"brokers"`
	// TLS is the client's TLS (MARTY_KAFKA_TLS_ENABLED, _CA_FILE,
	// _CERT_FILE, _KEY_FILE, _SERVER_NAME, _INSECURE_SKIP_VERIFY): any of
	// them turns TLS on.
	TLS fxcore.TLS `koanf:"tls"`
	// SASLMechanism is "" (none), plain, scram-sha-256 or scram-sha-512.
	SASLMechanism string `koanf:"sasl_mechanism"`
	// SASLUsername and SASLPassword are the SASL credentials.
	SASLUsername string `koanf:"sasl_username"`
	SASLPassword string `koanf:"sasl_password"`

	// TopicPrefix starts every event topic: "<prefix>.<event type>".
	TopicPrefix string `koanf:"topic_prefix"`
	// CreateTopics creates missing topics (events' and dead letters') with
	// Partitions and ReplicationFactor; false only checks that they exist
	// and fails clearly when one does not.
	CreateTopics bool `koanf:"create_topics"`
	// Partitions of the topics created; an aggregate's events always go to
	// the same partition (key = aggregate id), so this bounds how many
	// replicas of a service consume in parallel.
	Partitions int `koanf:"partitions"`
	// ReplicationFactor of the topics created; -1 uses the broker's
	// default.
	ReplicationFactor int `koanf:"replication_factor"`
	// DeadLetterTopic starts the topic dead letters are copied to:
	// "<dead_letter_topic>.<consumer group>"; empty means
	// "<topic_prefix>.deadletter".
	DeadLetterTopic string `koanf:"dead_letter_topic"`

	// MaxDeliveries is how many attempts a record gets before it is
	// dead-lettered; 0 uses MARTY_EVENTS_MAX_ATTEMPTS (it cannot be more).
	MaxDeliveries int `koanf:"max_deliveries"`
	// Backoff lists the delays before the retries of a failed record, by
	// attempt (the last one repeats), comma-separated; empty uses the
	// dispatcher's exponential backoff (MARTY_EVENTS_BACKOFF_INITIAL/MAX).
	// A record being retried holds its partition: later records of that
	// partition wait, which keeps an aggregate's events in order.
	Backoff Durations `koanf:"backoff"`
	// FetchMaxRecords bounds the records a consumer polls at once.
	FetchMaxRecords int `koanf:"fetch_max_records"`
	// SessionTimeout is the consumer group session timeout.
	SessionTimeout time.Duration `koanf:"session_timeout"`
	// RebalanceTimeout is how long a member may take to finish its
	// in-flight records and commit before a rebalance goes on without it.
	RebalanceTimeout time.Duration `koanf:"rebalance_timeout"`

	// DialTimeout bounds a connection to a broker.
	DialTimeout time.Duration `koanf:"dial_timeout"`
	// PublishTimeout bounds how long a publish (the idempotent producer's
	// retries included) waits for the brokers' acknowledgement.
	PublishTimeout time.Duration `koanf:"publish_timeout"`
	// ReadinessGrace is how long the brokers may be unreachable before the
	// readiness check "kafka" fails (critical with the memory bus,
	// degraded with the outbox bus).
	ReadinessGrace time.Duration `koanf:"readiness_grace"`
}

// Durations is a list of durations, written comma-separated in the
// environment ("200ms,1s,5s").
type Durations []time.Duration

// UnmarshalText parses comma-separated Go durations.
func (d *Durations) UnmarshalText(b []byte) error {
	*d = nil
	for _, p := range strings.Split(string(b), ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		v, err := time.ParseDuration(p)
		if err != nil {
			return err
		}
		*d = append(*d, v)
	}
	return nil
}

// DefaultConfig returns the defaults: broker 127.0.0.1:9092, topics
// "marty.events.<type>" created with 12 partitions and the broker's
// replication factor, batches of 500 records.
func DefaultConfig() Config {
	return Config{
		Brokers:           "127.0.0.1:9092",
		TopicPrefix:       "marty.events",
		CreateTopics:      true,
		Partitions:        12,
		ReplicationFactor: -1,
		FetchMaxRecords:   500,
		SessionTimeout:    45 * time.Second,
		RebalanceTimeout:  60 * time.Second,
		DialTimeout:       5 * time.Second,
		PublishTimeout:    10 * time.Second,
		ReadinessGrace:    10 * time.Second,
	}
}

// Validate checks the values.
func (c Config) Validate() error {
	if len(c.brokers()) == 0 {
		return fxcore.Invalid("brokers", c.Brokers, "host:port of one or more brokers, comma-separated")
	}
	for _, b := range c.brokers() {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fxcore.Invalid("brokers", c.Brokers, "host:port of one or more brokers, comma-separated")
		}
	}
	if !validTopic(c.TopicPrefix) {
		return fxcore.Invalid("topic_prefix", c.TopicPrefix, "letters, digits, '.', '_' and '-' (a topic name's characters)")
	}
	if c.DeadLetterTopic != "" && !validTopic(c.DeadLetterTopic) {
		return fxcore.Invalid("dead_letter_topic", c.DeadLetterTopic, "letters, digits, '.', '_' and '-' (a topic name's characters)")
	}
	if err := fxcore.OneOf("sasl_mechanism", strings.ToLower(c.SASLMechanism), SASLNone, SASLPlain, SASLScramSHA256, SASLScramSHA512); err != nil {
		return err
	}
	if c.SASLMechanism != "" && c.SASLUsername == "" {
		return fxcore.Invalid("sasl_username", "", "a user name (MARTY_KAFKA_SASL_MECHANISM is set)")
	}
	if c.Partitions < 1 {
		return fxcore.Invalid("partitions", c.Partitions, "a positive integer")
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 {
		return fxcore.Invalid("replication_factor", c.ReplicationFactor, "-1 (the broker's default) or a positive integer")
	}
	if c.MaxDeliveries < 0 {
		return fxcore.Invalid("max_deliveries", c.MaxDeliveries, "0 (MARTY_EVENTS_MAX_ATTEMPTS) or a positive integer")
	}
	if c.FetchMaxRecords < 1 {
		return fxcore.Invalid("fetch_max_records", c.FetchMaxRecords, "a positive integer")
	}
	durations := []struct {
		key string
		v   time.Duration
	}{
		{"session_timeout", c.SessionTimeout}, {"rebalance_timeout", c.RebalanceTimeout},
		{"dial_timeout", c.DialTimeout}, {"publish_timeout", c.PublishTimeout},
	}
	for _, d := range durations {
		if d.v <= 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a positive duration")
		}
	}
	if c.ReadinessGrace < 0 {
		return fxcore.Invalid("readiness_grace", c.ReadinessGrace.String(), "a duration >= 0")
	}
	for _, b := range c.Backoff {
		if b <= 0 {
			return fxcore.Invalid("backoff", b.String(), "positive durations, comma-separated (e.g. 1s,5s,30s)")
		}
	}
	return c.TLS.Validate("tls")
}

func (c Config) brokers() []string {
	var out []string
	for _, b := range strings.Split(c.Brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// validTopic reports whether s is a legal Kafka topic name (and not too
// long for a suffix to follow).
func validTopic(s string) bool {
	if s == "" || len(s) > 200 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}

// deadLetterPrefix is the dead-letter topics' prefix.
func (c Config) deadLetterPrefix() string {
	if c.DeadLetterTopic != "" {
		return c.DeadLetterTopic
	}
	return c.TopicPrefix + ".deadletter"
}
