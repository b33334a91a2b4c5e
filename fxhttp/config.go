package fxhttp

import (
	"net"
	"time"

	"github.com/martyfx/martyfx/fxcore"
)

// Access log modes for Config.AccessLog.
const (
	// AccessLogAll logs every request (except probe and metrics paths).
	AccessLogAll = "all"
	// AccessLogSampled logs a random fraction (AccessLogRatio) of requests,
	// and every 5xx response.
	AccessLogSampled = "sampled"
	// AccessLogOff logs no request.
	AccessLogOff = "off"
)

// Config is the "http" section: MARTY_HTTP_<FIELD>.
type Config struct {
	// Addr is the public server's address (MARTY_HTTP_ADDR); "" disables it.
	Addr string `koanf:"addr"`
	// AdminAddr is the admin server's address (MARTY_HTTP_ADMIN_ADDR); ""
	// disables it, and the same value as Addr serves the admin routes on the
	// public server (except port 0: each server gets its own free port).
	// The default listens on every interface: kubelet probes and Prometheus
	// reach the pod on its IP, not on loopback. What it serves is safe to
	// expose that way: probes and /metrics are read-only and carry no
	// payload, and in production the other admin routes need AdminToken.
	AdminAddr string `koanf:"admin_addr"`
	// ReadHeaderTimeout bounds reading the request headers (slowloris guard).
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`
	// ReadTimeout bounds reading the whole request, body included; 0 is none.
	ReadTimeout time.Duration `koanf:"read_timeout"`
	// WriteTimeout bounds the time from the end of the headers to the end
	// of the response; 0 is none.
	WriteTimeout time.Duration `koanf:"write_timeout"`
	// IdleTimeout closes keep-alive connections idle for that long.
	IdleTimeout time.Duration `koanf:"idle_timeout"`
	// MaxHeaderBytes caps the request headers' size.
	MaxHeaderBytes int `koanf:"max_header_bytes"`
	// MaxBodyBytes caps request bodies (413 beyond); 0 is no limit.
	MaxBodyBytes int64 `koanf:"max_body_bytes"`
	// DrainDelay is waited after readiness turns NOT_SERVING and before the
	// public listener closes, so load balancers stop sending new requests
	// first. The largest drain delay configured across servers
	// (MARTY_HTTP_DRAIN_DELAY, MARTY_GRPC_DRAIN_DELAY) is waited once.
	DrainDelay time.Duration `koanf:"drain_delay"`
	// H2C serves unencrypted HTTP/2 (prior knowledge) next to HTTP/1.1.
	H2C bool `koanf:"h2c"`
	// TLS serves HTTPS on both servers when CertFile and KeyFile are set
	// (MARTY_HTTP_TLS_CERT_FILE, MARTY_HTTP_TLS_KEY_FILE); CAFile
	// (MARTY_HTTP_TLS_CA_FILE) also requires client certificates that chain
	// to it (mutual TLS). The client-side fields (ServerName,
	// InsecureSkipVerify) mean nothing here.
	TLS fxcore.TLS `koanf:"tls"`
	// AccessLog is all, sampled or off.
	AccessLog string `koanf:"access_log"`
	// AccessLogRatio is the fraction of requests logged in sampled mode.
	AccessLogRatio float64 `koanf:"access_log_ratio"`
	// AdminToken (MARTY_HTTP_ADMIN_TOKEN), when set, is required by the
	// protected admin routes, those that show payloads, status detail or
	// change state (dead letters and their re-drive, /statusz, the dashboard
	// and its API, ...): "Authorization: Bearer <token>" (the scheme in any
	// case), or for a browser ?token=<token> once, which sets an HttpOnly
	// SameSite=Strict cookie. Open admin routes (probes, /metrics; see
	// Open) never need it. In production (MARTY_ENV=production) without a
	// token the protected routes are not served at all and start logs a
	// warning naming them; elsewhere they are served without one.
	AdminToken string `koanf:"admin_token"`
}

// DefaultConfig returns safe defaults: :8080 and :9090, 10s to read
// headers, 60s to read a request and to write a response, 120s idle,
// 1 MiB of headers, 4 MiB of body, h2c on, every request logged.
func DefaultConfig() Config {
	return Config{
		Addr:              ":8080",
		AdminAddr:         ":9090",
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    1 << 20,
		MaxBodyBytes:      4 << 20,
		H2C:               true,
		AccessLog:         AccessLogAll,
		AccessLogRatio:    0.1,
	}
}

// Validate checks the values; the loader names the variable at fault.
func (c Config) Validate() error {
	for _, a := range []struct{ key, v string }{{"addr", c.Addr}, {"admin_addr", c.AdminAddr}} {
		if a.v == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			return fxcore.Invalid(a.key, a.v, `host:port such as ":8080" or "127.0.0.1:0", or "" to disable the server`)
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"read_timeout", c.ReadTimeout},
		{"write_timeout", c.WriteTimeout},
		{"idle_timeout", c.IdleTimeout},
		{"drain_delay", c.DrainDelay},
	} {
		if d.v < 0 {
			return fxcore.Invalid(d.key, d.v.String(), "a duration >= 0")
		}
	}
	if c.ReadHeaderTimeout == 0 {
		return fxcore.Invalid("read_header_timeout", c.ReadHeaderTimeout.String(), "a positive duration (an unbounded header read invites slowloris)")
	}
	if c.MaxHeaderBytes <= 0 {
		return fxcore.Invalid("max_header_bytes", c.MaxHeaderBytes, "a positive number of bytes")
	}
	if c.MaxBodyBytes < 0 {
		return fxcore.Invalid("max_body_bytes", c.MaxBodyBytes, "a number of bytes >= 0 (0 is no limit)")
	}
	if err := serverTLS(c.TLS); err != nil {
		return err
	}
	if err := fxcore.OneOf("access_log", c.AccessLog, AccessLogAll, AccessLogSampled, AccessLogOff); err != nil {
		return err
	}
	if !(c.AccessLogRatio >= 0 && c.AccessLogRatio <= 1) {
		return fxcore.Invalid("access_log_ratio", c.AccessLogRatio, "a fraction between 0 and 1")
	}
	return nil
}

// serverTLS checks a server's TLS settings: the certificate and key come
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

// sharedAdmin reports whether the admin routes are served by the public
// server: both addresses equal, and not a free port (":0").
func (c Config) sharedAdmin() bool {
	if c.AdminAddr == "" || c.AdminAddr != c.Addr {
		return false
	}
	_, port, _ := net.SplitHostPort(c.Addr)
	return port != "0"
}
