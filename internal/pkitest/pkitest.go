// Package pkitest makes a throwaway certificate authority for tests: a CA,
// a server certificate for 127.0.0.1 and localhost, and a client
// certificate, written as PEM files in the test's temporary directory.
package pkitest

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
)

// PKI holds the paths of the PEM files and the parsed pieces tests need.
type PKI struct {
	Dir                    string
	CA                     string // CA certificate file
	ServerCert, ServerKey  string // for 127.0.0.1 and localhost
	ClientCert, ClientKey  string
	Pool                   *x509.CertPool // the CA, for a client's RootCAs
	ClientPair, ServerPair tls.Certificate
}

// New makes a CA valid for an hour around now and its two leaves; it fails
// the test on any error.
func New(t testing.TB) *PKI {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("pkitest: %v", err)
		}
	}
	p := &PKI{Dir: t.TempDir()}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(p.Dir, name)
		must(os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	caCert, err := x509.ParseCertificate(caDER)
	must(err)
	p.CA = write("ca.pem", "CERTIFICATE", caDER)
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(caCert)

	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		must(err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		must(err)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p.ServerCert, p.ServerKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.ClientCert, p.ClientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	p.ClientPair, err = tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	must(err)
	p.ServerPair, err = tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	must(err)
	return p
}
