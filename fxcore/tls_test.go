package fxcore_test

import (
	"crypto/tls"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/internal/pkitest"
)

// handshake serves one TLS connection with srv and dials it with cli; it
// returns the client's and the server's handshake errors.
func handshake(t *testing.T, srv, cli *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		err = c.(*tls.Conn).Handshake()
		if err == nil {
			_, err = c.Write([]byte("x"))
		}
		done <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err == nil {
		_, err = io.ReadFull(c, make([]byte, 1))
		_ = c.Close()
	}
	return err, <-done
}

func TestTLSServerAndClient(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	srv, err := fxcore.TLS{CertFile: p.ServerCert, KeyFile: p.ServerKey}.ServerConfig()
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), srv.MinVersion)
	require.Equal(t, tls.NoClientCert, srv.ClientAuth)

	cli, err := fxcore.TLS{CAFile: p.CA}.ClientConfig()
	require.NoError(t, err)
	cerr, serr := handshake(t, srv, cli)
	require.NoError(t, cerr)
	require.NoError(t, serr)

	// Without the CA the client refuses the server; system roots do not know it.
	cli, err = fxcore.TLS{Enabled: true}.ClientConfig()
	require.NoError(t, err)
	cerr, _ = handshake(t, srv, cli)
	var verr *tls.CertificateVerificationError
	require.ErrorAs(t, cerr, &verr)
}

func TestTLSMutual(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	srv, err := fxcore.TLS{CertFile: p.ServerCert, KeyFile: p.ServerKey, CAFile: p.CA}.ServerConfig()
	require.NoError(t, err)
	require.Equal(t, tls.RequireAndVerifyClientCert, srv.ClientAuth)

	withCert, err := fxcore.TLS{CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey, ServerName: "localhost"}.ClientConfig()
	require.NoError(t, err)
	require.Equal(t, "localhost", withCert.ServerName)
	cerr, serr := handshake(t, srv, withCert)
	require.NoError(t, cerr)
	require.NoError(t, serr)

	without, err := fxcore.TLS{CAFile: p.CA}.ClientConfig()
	require.NoError(t, err)
	_, serr = handshake(t, srv, without)
	require.Error(t, serr, "the server requires a client certificate")
}

func TestTLSOffAndErrors(t *testing.T) {
	t.Parallel()
	c, err := fxcore.TLS{}.ServerConfig()
	require.NoError(t, err)
	require.Nil(t, c, "no certificate: plain TCP")
	c, err = fxcore.TLS{}.ClientConfig()
	require.NoError(t, err)
	require.Nil(t, c)
	require.False(t, fxcore.TLS{}.ClientOn())
	require.True(t, fxcore.TLS{Enabled: true}.ClientOn())
	require.True(t, fxcore.TLS{CertFile: "x", KeyFile: "y"}.ServerOn())

	_, err = fxcore.TLS{CAFile: "ca.pem"}.ServerConfig()
	require.ErrorContains(t, err, "needs the server's own certificate")
	_, err = fxcore.TLS{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}.ServerConfig()
	require.ErrorContains(t, err, "/nonexistent/c.pem")
	p := pkitest.New(t)
	_, err = fxcore.TLS{CAFile: p.ServerKey}.ClientConfig()
	require.ErrorContains(t, err, "no PEM certificate")

	var fe *fxcore.FieldError
	err = fxcore.TLS{CertFile: "c.pem"}.Validate("tls")
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "tls.key_file", fe.Key)
	err = fxcore.TLS{KeyFile: "k.pem"}.Validate("")
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "cert_file", fe.Key)
	err = fxcore.TLS{CAFile: "ca.pem", InsecureSkipVerify: true}.Validate("tls")
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "tls.insecure_skip_verify", fe.Key)
	require.NoError(t, fxcore.TLS{CertFile: "c", KeyFile: "k", CAFile: "ca"}.Validate("tls"))
}
