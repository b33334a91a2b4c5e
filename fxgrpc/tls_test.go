package fxgrpc_test

import (
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/internal/pkitest"
)

func echoOver(t *testing.T, addr string, opts ...fxgrpc.ClientOption) error {
	t.Helper()
	conn, err := fxgrpc.NewClient(addr, append(opts, fxgrpc.WithMaxAttempts(1))...)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	_, err = testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	return err
}

func serverTLSEnv(p *pkitest.PKI) []string {
	return []string{"MARTY_GRPC_TLS_CERT_FILE=" + p.ServerCert, "MARTY_GRPC_TLS_KEY_FILE=" + p.ServerKey}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	a := start(t, serverTLSEnv(p))
	require.NoError(t, echoOver(t, a.srv.Addr(), fxgrpc.WithTLS(fxcore.TLS{CAFile: p.CA})))
	// Plaintext and an untrusted server are refused.
	require.Equal(t, codes.Unavailable, status.Code(echoOver(t, a.srv.Addr())))
	err := echoOver(t, a.srv.Addr(), fxgrpc.WithTLS(fxcore.TLS{Enabled: true}))
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, err.Error(), "certificate")
	// A *tls.Config built in code goes through the dial options.
	require.NoError(t, echoOver(t, a.srv.Addr(), fxgrpc.WithDialOptions(
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: p.Pool, MinVersion: tls.VersionTLS12})))))
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	a := start(t, append(serverTLSEnv(p), "MARTY_GRPC_TLS_CA_FILE="+p.CA))
	require.NoError(t, echoOver(t, a.srv.Addr(),
		fxgrpc.WithTLS(fxcore.TLS{CAFile: p.CA, CertFile: p.ClientCert, KeyFile: p.ClientKey})))
	// Without a client certificate the handshake fails.
	err := echoOver(t, a.srv.Addr(), fxgrpc.WithTLS(fxcore.TLS{CAFile: p.CA}))
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

	// A named client from config dials with mTLS.
	b := start(t, append(serverTLSEnv(p), "MARTY_GRPC_TLS_CA_FILE="+p.CA))
	c := start(t, []string{
		"MARTY_GRPC_CLIENTS_SECURE_TARGET=" + b.srv.Addr(), "MARTY_GRPC_CLIENTS_SECURE_TLS_ENABLED=true",
		"MARTY_GRPC_CLIENTS_SECURE_TLS_CA_FILE=" + p.CA, "MARTY_GRPC_CLIENTS_SECURE_TLS_SERVER_NAME=localhost",
		"MARTY_GRPC_CLIENTS_SECURE_TLS_CERT_FILE=" + p.ClientCert, "MARTY_GRPC_CLIENTS_SECURE_TLS_KEY_FILE=" + p.ClientKey,
	})
	conn, err := c.clients.Get("secure")
	require.NoError(t, err)
	res, err := testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "mtls"})
	require.NoError(t, err)
	require.Equal(t, "mtls", res.GetMessage())

	// A client whose CA file does not load fails at Get, naming the file.
	d := start(t, []string{"MARTY_GRPC_CLIENTS_BROKEN_TARGET=" + b.srv.Addr(),
		"MARTY_GRPC_CLIENTS_BROKEN_TLS_CA_FILE=/nonexistent/ca.pem"})
	_, err = d.clients.Get("broken")
	require.ErrorContains(t, err, "fxgrpc: client for "+b.srv.Addr())
	require.ErrorContains(t, err, "/nonexistent/ca.pem")
}

func TestNewClientTLSErrors(t *testing.T) {
	t.Parallel()
	_, err := fxgrpc.NewClient("127.0.0.1:1", fxgrpc.WithTLS(fxcore.TLS{CertFile: "/c.pem"}))
	require.ErrorContains(t, err, "tls.key_file")
	_, err = fxgrpc.NewClient("127.0.0.1:1", fxgrpc.WithTLS(fxcore.TLS{CAFile: "/nonexistent/ca.pem"}))
	require.ErrorContains(t, err, "fxgrpc: client for 127.0.0.1:1: fxcore: TLS: read CA file")
}

func TestMissingCertificateFailsStart(t *testing.T) {
	t.Parallel()
	a := &app{}
	app := newApp(t, a, []string{"MARTY_GRPC_TLS_CERT_FILE=/nonexistent/cert.pem", "MARTY_GRPC_TLS_KEY_FILE=/nonexistent/key.pem"})
	require.ErrorContains(t, app.Err(), "fxgrpc: TLS (MARTY_GRPC_TLS_CERT_FILE, MARTY_GRPC_TLS_KEY_FILE, MARTY_GRPC_TLS_CA_FILE): ")
	require.ErrorContains(t, app.Err(), "/nonexistent/cert.pem")
}
