package fxgrpc_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

// pki is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type pki struct {
	dir                       string
	ca, serverCert, serverKey string
	clientCert, clientKey     string
	pool                      *x509.CertPool
	clientPair                tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	p.ca = p.write(t, "ca.pem", "CERTIFICATE", caDER)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(caCert)

	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	p.clientPair, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	require.NoError(t, err)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func echoOver(t *testing.T, addr string, opts ...fxgrpc.ClientOption) error {
	t.Helper()
	conn, err := fxgrpc.NewClient(addr, append(opts, fxgrpc.WithMaxAttempts(1))...)
	require.NoError(t, err)
	defer conn.Close()
	_, err = testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "x"})
	return err
}

func TestTLS(t *testing.T) {
	p := newPKI(t)
	a := start(t, []string{"MARTY_GRPC_TLS_CERT_FILE=" + p.serverCert, "MARTY_GRPC_TLS_KEY_FILE=" + p.serverKey})
	require.NoError(t, echoOver(t, a.srv.Addr(), fxgrpc.WithTLS(&tls.Config{RootCAs: p.pool})))
	// Plaintext and an untrusted server are refused.
	require.Equal(t, codes.Unavailable, status.Code(echoOver(t, a.srv.Addr())))
	err := echoOver(t, a.srv.Addr(), fxgrpc.WithTLS(&tls.Config{}))
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, err.Error(), "certificate")
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	a := start(t, []string{"MARTY_GRPC_TLS_CERT_FILE=" + p.serverCert, "MARTY_GRPC_TLS_KEY_FILE=" + p.serverKey,
		"MARTY_GRPC_TLS_CLIENT_CA_FILE=" + p.ca})
	require.NoError(t, echoOver(t, a.srv.Addr(),
		fxgrpc.WithTLS(&tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.clientPair}})))
	// Without a client certificate the handshake fails.
	err := echoOver(t, a.srv.Addr(), fxgrpc.WithTLS(&tls.Config{RootCAs: p.pool}))
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

	// A named client from config dials with mTLS.
	b := start(t, []string{"MARTY_GRPC_TLS_CERT_FILE=" + p.serverCert, "MARTY_GRPC_TLS_KEY_FILE=" + p.serverKey,
		"MARTY_GRPC_TLS_CLIENT_CA_FILE=" + p.ca})
	c := start(t, []string{
		"MARTY_GRPC_CLIENTS_SECURE_TARGET=" + b.srv.Addr(), "MARTY_GRPC_CLIENTS_SECURE_TLS=true",
		"MARTY_GRPC_CLIENTS_SECURE_CA_FILE=" + p.ca,
		"MARTY_GRPC_CLIENTS_SECURE_CERT_FILE=" + p.clientCert, "MARTY_GRPC_CLIENTS_SECURE_KEY_FILE=" + p.clientKey,
	})
	conn, err := c.clients.Get("secure")
	require.NoError(t, err)
	res, err := testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "mtls"})
	require.NoError(t, err)
	require.Equal(t, "mtls", res.GetMessage())
}

func TestMissingCertificateFailsStart(t *testing.T) {
	a := &app{}
	app := newApp(t, a, []string{"MARTY_GRPC_TLS_CERT_FILE=/nonexistent/cert.pem", "MARTY_GRPC_TLS_KEY_FILE=/nonexistent/key.pem"})
	require.ErrorContains(t, app.Err(), "fxgrpc: load TLS key pair MARTY_GRPC_TLS_CERT_FILE=/nonexistent/cert.pem")
}
