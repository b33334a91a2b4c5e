package natsjs

import (
	"net/url"
	"strings"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// The values of Config.Storage.
const (
	// StorageFile keeps the stream on disk.
	StorageFile = "file"
	// StorageMemory keeps the stream in memory (lost when the server stops).
	StorageMemory = "memory"
)

// Config is the "nats" section (MARTY_NATS_<FIELD>).
type Config struct {
	// URL is the server to connect to; several may be given separated by
	// commas (a cluster). Ignored with Embedded.
	URL string `koanf:"url"`
	// CredsFile is a NATS credentials file (JWT and nkey seed).
	CredsFile string `koanf:"creds_file"`
	// NKeySeedFile is a file holding an nkey seed (user nkey auth).
	NKeySeedFile string `koanf:"nkey_seed_file"`
	// TLS is the client's TLS (MARTY_NATS_TLS_ENABLED, _CA_FILE,
	// _CERT_FILE, _KEY_FILE, _SERVER_NAME, _INSECURE_SKIP_VERIFY): any of
	// them, or a tls:// URL, turns TLS on; the CA file verifies the server
	// (the system roots without one) and the certificate and key are the
	// client's for mutual TLS.
	TLS fxcore.TLS `koanf:"tls"`

	// Stream is the JetStream stream the events are stored in.
	Stream string `koanf:"stream"`
	// SubjectPrefix starts every event subject: "<prefix>.<event type>";
	// the stream captures "<prefix>.>".
	SubjectPrefix string `koanf:"subject_prefix"`
	// Storage is file or memory.
	Storage string `koanf:"storage"`
	// Replicas is the stream's replica count (1 to 5; more than 1 needs a
	// cluster).
	Replicas int `koanf:"replicas"`
	// MaxAge is how long the stream keeps a message.
	MaxAge time.Duration `koanf:"max_age"`
	// DuplicateWindow is how long JetStream remembers message ids: an
	// envelope published again within it is stored once.
	DuplicateWindow time.Duration `koanf:"duplicate_window"`

	// FetchBatch is how many messages a consumer pulls at once.
	FetchBatch int `koanf:"fetch_batch"`
	// MaxDeliveries is how many times a message is delivered to a handler
	// before it is terminated and copied to the dead-letter subject; 0 uses
	// MARTY_EVENTS_MAX_ATTEMPTS (it cannot be more than that).
	MaxDeliveries int `koanf:"max_deliveries"`
	// AckWait is how long the server waits for an acknowledgement before it
	// redelivers; a handler running longer keeps its message with
	// InProgress every AckWait/3.
	AckWait time.Duration `koanf:"ack_wait"`
	// Backoff lists the redelivery delays after a failed attempt, by
	// attempt (the last one repeats), comma-separated; empty uses the
	// dispatcher's exponential backoff (MARTY_EVENTS_BACKOFF_INITIAL/MAX).
	Backoff Durations `koanf:"backoff"`
	// DeadLetterSubject starts the subject dead letters are copied to:
	// "<dead_letter_subject>.<consumer>"; empty means
	// "<subject_prefix>.deadletter" (stored in the same stream).
	DeadLetterSubject string `koanf:"dead_letter_subject"`

	// ConnectTimeout bounds the first connection at start.
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// ReconnectWait is the first delay between reconnection attempts; it
	// doubles (with jitter) up to ReconnectMax. Reconnection never gives up.
	ReconnectWait time.Duration `koanf:"reconnect_wait"`
	// ReconnectMax caps the delay between reconnection attempts.
	ReconnectMax time.Duration `koanf:"reconnect_max"`
	// PublishTimeout is how long a publish keeps trying while connected
	// (waiting for PubAcks, resending unacknowledged messages) before it
	// fails. While disconnected, Publish waits for the reconnection until
	// its context ends or the app stops.
	PublishTimeout time.Duration `koanf:"publish_timeout"`
	// ReadinessGrace is how long the connection may be down before the
	// readiness check "nats" fails (critical with the memory bus, degraded
	// with the outbox bus).
	ReadinessGrace time.Duration `koanf:"readiness_grace"`

	// Embedded starts an in-process nats-server with JetStream, listening
	// on 127.0.0.1 only, and connects to it (development and tests). The
	// server is not linked into natsjs: the app needs natsdev.Module
	// (package fxevents/natsjs/natsdev), or ConnOptions.EmbeddedServer.
	Embedded bool `koanf:"embedded"`
	// StoreDir is the embedded server's JetStream directory; empty uses a
	// temporary directory removed at stop.
	StoreDir string `koanf:"store_dir"`
	// EmbeddedPort is the embedded server's port; 0 picks a free one.
	EmbeddedPort int `koanf:"embedded_port"`
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

// DefaultConfig returns the defaults: nats://127.0.0.1:4222, stream
// MARTY_EVENTS on "marty.events.>", file storage, 1 replica, 7 days, a 2
// minute duplicate window, batches of 256, 30s ack wait.
func DefaultConfig() Config {
	return Config{
		URL:             "nats://127.0.0.1:4222",
		Stream:          "MARTY_EVENTS",
		SubjectPrefix:   "marty.events",
		Storage:         StorageFile,
		Replicas:        1,
		MaxAge:          7 * 24 * time.Hour,
		DuplicateWindow: 2 * time.Minute,
		FetchBatch:      256,
		AckWait:         30 * time.Second,
		ConnectTimeout:  5 * time.Second,
		ReconnectWait:   100 * time.Millisecond,
		ReconnectMax:    5 * time.Second,
		PublishTimeout:  10 * time.Second,
		ReadinessGrace:  10 * time.Second,
	}
}

// Validate checks the values.
func (c Config) Validate() error {
	if !c.Embedded {
		if err := validURLs(c.URL); err != nil {
			return err
		}
	}
	if c.Stream == "" || strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		return fxcore.Invalid("stream", c.Stream, "a stream name without spaces, '.', '*', '>', '/' or '\\'")
	}
	if !validSubject(c.SubjectPrefix) {
		return fxcore.Invalid("subject_prefix", c.SubjectPrefix, "a subject of non-empty dot-separated tokens without spaces or wildcards")
	}
	if c.DeadLetterSubject != "" && !validSubject(c.DeadLetterSubject) {
		return fxcore.Invalid("dead_letter_subject", c.DeadLetterSubject, "a subject of non-empty dot-separated tokens without spaces or wildcards")
	}
	if err := fxcore.OneOf("storage", c.Storage, StorageFile, StorageMemory); err != nil {
		return err
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fxcore.Invalid("replicas", c.Replicas, "1 to 5")
	}
	if c.FetchBatch < 1 {
		return fxcore.Invalid("fetch_batch", c.FetchBatch, "a positive integer")
	}
	if c.MaxDeliveries < 0 {
		return fxcore.Invalid("max_deliveries", c.MaxDeliveries, "0 (MARTY_EVENTS_MAX_ATTEMPTS) or a positive integer")
	}
	if c.EmbeddedPort < 0 || c.EmbeddedPort > 65535 {
		return fxcore.Invalid("embedded_port", c.EmbeddedPort, "0 (a free port) to 65535")
	}
	durations := []struct {
		key string
		v   time.Duration
	}{
		{"max_age", c.MaxAge}, {"duplicate_window", c.DuplicateWindow}, {"ack_wait", c.AckWait},
		{"connect_timeout", c.ConnectTimeout}, {"reconnect_wait", c.ReconnectWait},
		{"reconnect_max", c.ReconnectMax}, {"publish_timeout", c.PublishTimeout},
	}
	for _, d := range durations {
		if d.v <= 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a positive duration")
		}
	}
	if c.DuplicateWindow > c.MaxAge {
		return fxcore.Invalid("duplicate_window", c.DuplicateWindow.String(), "at most max_age ("+c.MaxAge.String()+")")
	}
	if c.ReconnectMax < c.ReconnectWait {
		return fxcore.Invalid("reconnect_max", c.ReconnectMax.String(), "at least reconnect_wait ("+c.ReconnectWait.String()+")")
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

func validURLs(s string) error {
	if strings.TrimSpace(s) == "" {
		return fxcore.Invalid("url", s, "a nats:// URL (or set MARTY_NATS_EMBEDDED=true)")
	}
	for _, part := range strings.Split(s, ",") {
		u, err := url.Parse(strings.TrimSpace(part))
		if err != nil || u.Host == "" {
			return fxcore.Invalid("url", redactURLs(s), "nats://host:port URLs, comma-separated")
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fxcore.Invalid("url", redactURLs(s), "a nats://, tls://, ws:// or wss:// URL")
		}
	}
	return nil
}

// validSubject reports whether s is a literal subject: dot-separated,
// non-empty tokens without whitespace or wildcards.
func validSubject(s string) bool {
	if s == "" {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}

// redactURLs hides the passwords and tokens of URLs.
func redactURLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// deadLetterPrefix is the dead-letter subject's first tokens.
func (c Config) deadLetterPrefix() string {
	if c.DeadLetterSubject != "" {
		return c.DeadLetterSubject
	}
	return c.SubjectPrefix + ".deadletter"
}
