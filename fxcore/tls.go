package fxcore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLS is the one TLS configuration of every martyfx server and client
// (fxhttp, fxgrpc servers and clients, the event transports, the cache):
// PEM files named by path, so a module's config section reads them from
// MARTY_<MODULE>_TLS_CERT_FILE, ..._KEY_FILE, ..._CA_FILE, ..._SERVER_NAME,
// ..._ENABLED and ..._INSECURE_SKIP_VERIFY.
//
// A server serves TLS when CertFile and KeyFile are set; with CAFile it also
// requires client certificates that chain to that bundle (mutual TLS).
// A client dials TLS when Enabled, or when any file is set (or its URL says
// so, for transports with URLs); CAFile holds the roots that verify the
// server (the system roots when empty) and CertFile/KeyFile are its own
// certificate for mutual TLS.
type TLS struct {
	// Enabled turns TLS on for a client that needs no file (system roots).
	Enabled bool `koanf:"enabled"`
	// CertFile is this side's certificate (PEM), with KeyFile.
	CertFile string `koanf:"cert_file"`
	// KeyFile is this side's private key (PEM), with CertFile.
	KeyFile string `koanf:"key_file"`
	// CAFile is a PEM bundle: on a server, the CAs client certificates must
	// chain to (mutual TLS); on a client, the roots that verify the server.
	CAFile string `koanf:"ca_file"`
	// ServerName is the name a client verifies (default: the host dialled).
	ServerName string `koanf:"server_name"`
	// InsecureSkipVerify makes a client accept any server certificate.
	// For development only: Validate refuses it with a CAFile.
	InsecureSkipVerify bool `koanf:"insecure_skip_verify"`
}

// ClientOn reports whether a client configured with t dials TLS.
func (t TLS) ClientOn() bool {
	return t.Enabled || t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// ServerOn reports whether a server configured with t serves TLS.
func (t TLS) ServerOn() bool { return t.CertFile != "" || t.KeyFile != "" }

// Validate checks that the certificate and key come together and that the
// options do not contradict each other; errors name the keys under prefix
// (e.g. "tls" gives "tls.key_file", which the config loader reports as
// MARTY_HTTP_TLS_KEY_FILE). It does not read the files: ServerConfig and
// ClientConfig do, at start.
func (t TLS) Validate(prefix string) error {
	key := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		return Invalid(key("key_file"), t.KeyFile, "a key file, since "+key("cert_file")+" is set")
	case t.KeyFile != "" && t.CertFile == "":
		return Invalid(key("cert_file"), t.CertFile, "a certificate file, since "+key("key_file")+" is set")
	case t.InsecureSkipVerify && t.CAFile != "":
		return Invalid(key("insecure_skip_verify"), t.InsecureSkipVerify, "false when "+key("ca_file")+" is set (the CA verifies the peer)")
	}
	return nil
}

// ServerConfig loads the files into a server's *tls.Config (TLS 1.2 or
// newer); nil when t has no certificate. With CAFile, client certificates
// are required and verified against it.
func (t TLS) ServerConfig() (*tls.Config, error) {
	if !t.ServerOn() {
		if t.CAFile != "" {
			return nil, errors.New("fxcore: TLS: a CA file for client certificates needs the server's own certificate and key")
		}
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("fxcore: TLS: load certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pool, err := loadCertPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// ClientConfig loads the files into a client's *tls.Config (TLS 1.2 or
// newer); nil when t does not turn TLS on.
func (t TLS) ClientConfig() (*tls.Config, error) {
	if !t.ClientOn() {
		return nil, nil
	}
	c := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, development only, documented
	}
	if t.CAFile != "" {
		pool, err := loadCertPool(t.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("fxcore: TLS: load client certificate %s and key %s: %w", t.CertFile, t.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

func loadCertPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("fxcore: TLS: read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("fxcore: TLS: no PEM certificate in CA file %s", file)
	}
	return pool, nil
}
