package fxhttp

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/internal/pkitest"
)

func protoRoute() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
}

func TestTLSFromCertAndKeyFiles(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	h := start(t, []string{"MARTY_HTTP_TLS_CERT_FILE=" + p.ServerCert, "MARTY_HTTP_TLS_KEY_FILE=" + p.ServerKey},
		AsRoute("GET /proto", protoRoute))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + h.srv.Addr() + "/proto")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "HTTP/2.0", string(b))
	require.Equal(t, "https", attrs(h.span("GET /proto"))["url.scheme"])

	_, err = newApp(t, []string{"MARTY_HTTP_TLS_CERT_FILE=/nonexistent/cert.pem", "MARTY_HTTP_TLS_KEY_FILE=" + p.ServerKey})
	require.ErrorContains(t, err, "fxhttp: TLS (MARTY_HTTP_TLS_CERT_FILE, MARTY_HTTP_TLS_KEY_FILE, MARTY_HTTP_TLS_CA_FILE): ")
	require.ErrorContains(t, err, "/nonexistent/cert.pem")
}

func TestMutualTLSWithCAFile(t *testing.T) {
	t.Parallel()
	p := pkitest.New(t)
	h := start(t, []string{"MARTY_HTTP_TLS_CERT_FILE=" + p.ServerCert, "MARTY_HTTP_TLS_KEY_FILE=" + p.ServerKey,
		"MARTY_HTTP_TLS_CA_FILE=" + p.CA}, AsRoute("GET /proto", protoRoute))
	get := func(certs ...tls.Certificate) error {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool, Certificates: certs}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + h.srv.Addr() + "/proto")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	require.NoError(t, get(p.ClientPair))
	require.Error(t, get(), "a client without a certificate is refused")
}

func TestTLSConfigNeedsACertificate(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{
		"MARTY_HTTP_TLS_KEY_FILE=/k.pem": "MARTY_HTTP_TLS_CERT_FILE",
		"MARTY_HTTP_TLS_CERT_FILE=/c":    "MARTY_HTTP_TLS_KEY_FILE",
		"MARTY_HTTP_TLS_CA_FILE=/ca.pem": "MARTY_HTTP_TLS_CERT_FILE",
		"MARTY_HTTP_TLS_ENABLED=true":    "MARTY_HTTP_TLS_CERT_FILE",
	} {
		_, err := newApp(t, []string{env})
		require.ErrorContains(t, err, want, env)
	}
}
