package fxgrpc

import (
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/martyfx/martyfx/fxcore"
)

// Config is the "grpc" section: environment variables MARTY_GRPC_<FIELD>.
type Config struct {
	// Addr is the listen address (MARTY_GRPC_ADDR); ":0" binds a free port.
	Addr string `koanf:"addr"`

	// MaxRecvMsgSize and MaxSendMsgSize bound one message, in bytes.
	MaxRecvMsgSize int `koanf:"max_recv_msg_size"`
	MaxSendMsgSize int `koanf:"max_send_msg_size"`

	// MaxConcurrentStreams bounds the streams of one connection (0: grpc's default).
	MaxConcurrentStreams uint32 `koanf:"max_concurrent_streams"`
	// MaxConnections bounds the open connections; further ones wait in the
	// kernel's backlog (0: unlimited).
	MaxConnections int `koanf:"max_connections"`

	// KeepaliveTime is how long a connection may be idle before the server
	// pings it; KeepaliveTimeout how long it waits for the ack.
	KeepaliveTime    time.Duration `koanf:"keepalive_time"`
	KeepaliveTimeout time.Duration `koanf:"keepalive_timeout"`
	// MaxConnectionIdle closes connections idle that long (0: never).
	MaxConnectionIdle time.Duration `koanf:"max_connection_idle"`
	// MaxConnectionAge closes connections that old (0: never), after a
	// MaxConnectionAgeGrace for calls in flight; it spreads load after scaling.
	MaxConnectionAge      time.Duration `koanf:"max_connection_age"`
	MaxConnectionAgeGrace time.Duration `koanf:"max_connection_age_grace"`
	// KeepaliveMinTime is the enforcement policy: clients pinging more often
	// are disconnected; KeepalivePermitWithoutStream allows pings with no call.
	KeepaliveMinTime             time.Duration `koanf:"keepalive_min_time"`
	KeepalivePermitWithoutStream bool          `koanf:"keepalive_permit_without_stream"`

	// Reflection registers the reflection service: "auto" (on outside
	// production), "on" or "off".
	Reflection string `koanf:"reflection"`

	// TLS serves TLS when CertFile and KeyFile are set
	// (MARTY_GRPC_TLS_CERT_FILE, MARTY_GRPC_TLS_KEY_FILE); CAFile
	// (MARTY_GRPC_TLS_CA_FILE) also requires client certificates that chain
	// to it (mutual TLS). The client-side fields (ServerName,
	// InsecureSkipVerify) mean nothing here.
	TLS fxcore.TLS `koanf:"tls"`

	// DrainDelay is waited between health turning NOT_SERVING and the start
	// of the graceful stop, so load balancers stop sending new calls. The
	// largest drain delay configured across servers (MARTY_GRPC_DRAIN_DELAY,
	// MARTY_HTTP_DRAIN_DELAY) is waited once.
	DrainDelay time.Duration `koanf:"drain_delay"`

	// LogOKLevel, LogClientErrorLevel and LogServerErrorLevel are the zap
	// levels of the finished-call log line by outcome: OK; a caller's error
	// (InvalidArgument, NotFound, AlreadyExists, PermissionDenied,
	// Unauthenticated, FailedPrecondition, OutOfRange, Canceled, Aborted,
	// ResourceExhausted); any other code. "off" logs nothing for that outcome.
	LogOKLevel          string `koanf:"log_ok_level"`
	LogClientErrorLevel string `koanf:"log_client_error_level"`
	LogServerErrorLevel string `koanf:"log_server_error_level"`

	// Gateway is the ServeMux pattern the grpc-gateway mux is mounted at on
	// the public HTTP server when AsGateway is used.
	GatewayPattern string `koanf:"gateway_pattern"`

	// Clients are named client connections (MARTY_GRPC_CLIENTS_<NAME>_TARGET ...),
	// available from *Clients.
	Clients map[string]ClientConfig `koanf:"clients"`
}

// ClientConfig configures one named client: MARTY_GRPC_CLIENTS_<NAME>_<FIELD>.
type ClientConfig struct {
	// Target is a gRPC target: "host:port", "dns:///host:port" (round robin
	// over the resolved addresses), "unix:///path".
	Target string `koanf:"target"`
	// Timeout is the deadline set on calls whose context has none (default 10s).
	Timeout time.Duration `koanf:"timeout"`
	// MaxAttempts is the number of attempts of a call that fails with
	// UNAVAILABLE, retried with backoff (default 3; 1 disables retries).
	MaxAttempts int `koanf:"max_attempts"`
	// Breaker guards the client with an fxmonitor circuit breaker named
	// "grpc.<name>" (needs fxmonitor.Module): calls fail fast with
	// UNAVAILABLE while it is open.
	Breaker bool `koanf:"breaker"`
	// TLS dials with TLS when Enabled or when any of its files is set
	// (MARTY_GRPC_CLIENTS_<NAME>_TLS_ENABLED, ..._TLS_CA_FILE ...): CAFile
	// verifies the server (the system roots when empty), CertFile and
	// KeyFile are the client certificate for mutual TLS, ServerName the
	// name verified (default: the target's host).
	TLS fxcore.TLS `koanf:"tls"`
}

// DefaultConfig returns the defaults: :50051, 4 MiB messages, grpc-go's
// keepalive defaults, reflection outside production, no drain delay, OK calls
// and caller errors logged at info, server errors at error.
func DefaultConfig() Config {
	return Config{
		Addr:                ":50051",
		MaxRecvMsgSize:      4 << 20,
		MaxSendMsgSize:      4 << 20,
		KeepaliveTime:       2 * time.Hour,
		KeepaliveTimeout:    20 * time.Second,
		KeepaliveMinTime:    5 * time.Minute,
		Reflection:          "auto",
		LogOKLevel:          "info",
		LogClientErrorLevel: "info",
		LogServerErrorLevel: "error",
		GatewayPattern:      "/",
	}
}

const defaultClientTimeout = 10 * time.Second

var logLevels = []string{"debug", "info", "warn", "error", "off"}

// Validate checks the values.
func (c Config) Validate() error {
	if c.Addr == "" {
		return fxcore.Invalid("addr", c.Addr, "a listen address such as :50051 or 127.0.0.1:0")
	}
	if c.MaxRecvMsgSize <= 0 {
		return fxcore.Invalid("max_recv_msg_size", c.MaxRecvMsgSize, "a positive number of bytes")
	}
	if c.MaxSendMsgSize <= 0 {
		return fxcore.Invalid("max_send_msg_size", c.MaxSendMsgSize, "a positive number of bytes")
	}
	if c.MaxConnections < 0 {
		return fxcore.Invalid("max_connections", c.MaxConnections, "0 (unlimited) or more")
	}
	for key, d := range map[string]time.Duration{
		"keepalive_time": c.KeepaliveTime, "keepalive_timeout": c.KeepaliveTimeout,
		"max_connection_idle": c.MaxConnectionIdle, "max_connection_age": c.MaxConnectionAge,
		"max_connection_age_grace": c.MaxConnectionAgeGrace, "keepalive_min_time": c.KeepaliveMinTime,
		"drain_delay": c.DrainDelay,
	} {
		if d < 0 {
			return fxcore.Invalid(key, d.String(), "a non-negative duration")
		}
	}
	if err := fxcore.OneOf("reflection", c.Reflection, "auto", "on", "off"); err != nil {
		return err
	}
	if err := serverTLS(c.TLS); err != nil {
		return err
	}
	for key, v := range map[string]string{
		"log_ok_level": c.LogOKLevel, "log_client_error_level": c.LogClientErrorLevel,
		"log_server_error_level": c.LogServerErrorLevel,
	} {
		if err := fxcore.OneOf(key, v, logLevels...); err != nil {
			return err
		}
	}
	if c.GatewayPattern == "" {
		return fxcore.Invalid("gateway_pattern", c.GatewayPattern, "a ServeMux pattern such as / or /api/")
	}
	for name, cc := range c.Clients {
		prefix := "clients." + name + "."
		if cc.Target == "" {
			return fxcore.Invalid(prefix+"target", cc.Target, "a gRPC target such as dns:///orders:50051")
		}
		if cc.Timeout < 0 {
			return fxcore.Invalid(prefix+"timeout", cc.Timeout.String(), "a non-negative duration")
		}
		if cc.MaxAttempts < 0 || cc.MaxAttempts > 5 {
			return fxcore.Invalid(prefix+"max_attempts", cc.MaxAttempts, "0 (default 3) to 5")
		}
		if err := cc.TLS.Validate(prefix + "tls"); err != nil {
			return err
		}
	}
	return nil
}

// serverTLS checks the server's TLS settings: the certificate and key come
// together, and a CA file (mutual TLS) or Enabled needs them.
func serverTLS(t fxcore.TLS) error {
	if err := t.Validate("tls"); err != nil {
		return err
	}
	if !t.ServerOn() {
		switch {
		case t.CAFile != "":
			return fxcore.Invalid("tls.cert_file", t.CertFile, "a certificate file, since tls.ca_file (client certificates) is set")
		case t.Enabled:
			return fxcore.Invalid("tls.cert_file", t.CertFile, "a certificate file, since tls.enabled is set")
		}
	}
	return nil
}

// level parses a validated level; ok is false for "off".
func level(s string) (zapcore.Level, bool) {
	if s == "off" {
		return 0, false
	}
	l, err := zapcore.ParseLevel(s)
	return l, err == nil
}
