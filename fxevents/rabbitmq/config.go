package rabbitmq

import (
	"net/url"
	"strings"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Config is the "rabbitmq" section (MARTY_RABBITMQ_<FIELD>).
type Config struct {
	// URL is the broker: amqp://user:password@host:5672/vhost, or amqps://
	// for TLS.
	URL string `koanf:"url"`
	// TLS is the client's TLS (MARTY_RABBITMQ_TLS_ENABLED, _CA_FILE,
	// _CERT_FILE, _KEY_FILE, _SERVER_NAME, _INSECURE_SKIP_VERIFY): any of
	// them, or an amqps:// URL, turns TLS on.
	TLS fxcore.TLS `koanf:"tls"`

	// Exchange is the durable direct exchange events are published to; it
	// also starts every queue name: "<exchange>.<consumer>.<partition>",
	// "<exchange>.<consumer>.retry.<n>", "<exchange>.<consumer>.dead", and
	// the retry exchange "<exchange>.retry".
	Exchange string `koanf:"exchange"`
	// Partitions is how many work queues each handler of a service has.
	// An event goes to partition hash(aggregate id) mod Partitions; each
	// partition queue has one active consumer (single-active-consumer), so
	// an aggregate's events are handled in order, and replicas share the
	// work by partitions. Every publisher and consumer of the exchange must
	// use the same value.
	Partitions int `koanf:"partitions"`
	// Prefetch is how many unacknowledged messages a partition's consumer
	// holds (basic.qos).
	Prefetch int `koanf:"prefetch"`
	// MaxDeliveries is how many times a message is handled before it goes
	// to the dead-letter queue; 0 uses MARTY_EVENTS_MAX_ATTEMPTS (it
	// cannot be more than that).
	MaxDeliveries int `koanf:"max_deliveries"`
	// Backoff lists the delays before the second, third... attempt,
	// comma-separated (the last one repeats); each is the message TTL of a
	// delay queue. Empty: MARTY_EVENTS_BACKOFF_INITIAL doubled per attempt
	// up to MARTY_EVENTS_BACKOFF_MAX (no jitter: a queue has one TTL).
	Backoff Durations `koanf:"backoff"`
	// RebalanceInterval is how often a replica checks whether it is the
	// active consumer of more partitions than its share and hands the
	// excess to a standby replica; 0 turns rebalancing off.
	RebalanceInterval time.Duration `koanf:"rebalance_interval"`

	// ConnectTimeout bounds the first connection at start.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// ReconnectWait is the first pause between reconnection attempts; it
	// doubles (±20% jitter) up to ReconnectMax. Reconnection never gives
	// up, except when the broker refuses the credentials (fatal).
	ReconnectWait time.Duration `koanf:"reconnect_wait"`
	// ReconnectMax caps the pause between reconnection attempts.
	ReconnectMax time.Duration `koanf:"reconnect_max"`
	// PublishTimeout is how long a publish waits for the broker's
	// confirmations while connected before it fails.
	PublishTimeout time.Duration `koanf:"publish_timeout"`
	// PublishChannels is how many confirm-mode channels publish in
	// parallel.
	PublishChannels int `koanf:"publish_channels"`
	// ReadinessGrace is how long the connection may be down before the
	// readiness check "rabbitmq" fails (critical with the memory bus,
	// degraded with the outbox bus).
	ReadinessGrace time.Duration `koanf:"readiness_grace"`
	// Heartbeat is the AMQP heartbeat interval: a dead TCP connection is
	// noticed after about twice this.
	Heartbeat time.Duration `koanf:"heartbeat"`
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

// DefaultConfig returns the defaults: amqp://guest:guest@127.0.0.1:5672/,
// exchange marty.events, 4 partitions, prefetch 64.
func DefaultConfig() Config {
	return Config{
		URL:               "amqp://guest:guest@127.0.0.1:5672/",
		Exchange:          "marty.events",
		Partitions:        4,
		Prefetch:          64,
		RebalanceInterval: 10 * time.Second,
		ConnectTimeout:    5 * time.Second,
		ReconnectWait:     100 * time.Millisecond,
		ReconnectMax:      5 * time.Second,
		PublishTimeout:    10 * time.Second,
		PublishChannels:   4,
		ReadinessGrace:    10 * time.Second,
		Heartbeat:         10 * time.Second,
	}
}

// Validate checks the values.
func (c Config) Validate() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" || (u.Scheme != "amqp" && u.Scheme != "amqps") {
		return fxcore.Invalid("url", redactURL(c.URL), "an amqp://user:password@host:5672/vhost or amqps:// URL")
	}
	if !validName(c.Exchange) {
		return fxcore.Invalid("exchange", c.Exchange, "a name of letters, digits, '.', '-', '_' (at most 200 bytes)")
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		return fxcore.Invalid("partitions", c.Partitions, "1 to 1024")
	}
	if c.Prefetch < 1 || c.Prefetch > 65535 {
		return fxcore.Invalid("prefetch", c.Prefetch, "1 to 65535")
	}
	if c.MaxDeliveries < 0 {
		return fxcore.Invalid("max_deliveries", c.MaxDeliveries, "0 (MARTY_EVENTS_MAX_ATTEMPTS) or a positive integer")
	}
	if c.PublishChannels < 1 || c.PublishChannels > 256 {
		return fxcore.Invalid("publish_channels", c.PublishChannels, "1 to 256")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"connect_timeout", c.ConnectTimeout}, {"reconnect_wait", c.ReconnectWait}, {"reconnect_max", c.ReconnectMax},
		{"publish_timeout", c.PublishTimeout}, {"heartbeat", c.Heartbeat},
	} {
		if d.v <= 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a positive duration")
		}
	}
	if c.ReconnectMax < c.ReconnectWait {
		return fxcore.Invalid("reconnect_max", c.ReconnectMax.String(), "at least reconnect_wait ("+c.ReconnectWait.String()+")")
	}
	if c.RebalanceInterval < 0 {
		return fxcore.Invalid("rebalance_interval", c.RebalanceInterval.String(), "a duration >= 0 (0: off)")
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

func validName(s string) bool {
	if s == "" || len(s) > 200 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// redactURL hides the URL's password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	return u.String()
}

// hostOf is the URL's host:port, for errors (no user, no vhost).
func hostOf(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Host
}
