package fxhttp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// gobreakerAdapter is how fxmonitor's breaker satisfies Breaker.
type gobreakerAdapter struct {
	cb *gobreaker.CircuitBreaker[struct{}]
}

func (g gobreakerAdapter) Execute(fn func() error) error {
	_, err := g.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	return err
}

func TestClientTracesPropagatesAndRecordsMetrics(t *testing.T) {
	var failing atomic.Bool
	var hits atomic.Int32
	srv := start(t, nil, AsRoute("GET /echo", func() http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if failing.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, trace.SpanContextFromContext(r.Context()).TraceID().String())
		})
	}))

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reg := prometheus.NewRegistry()
	cb := gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "echo",
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 2 },
		Timeout:     time.Minute,
	})
	client := NewClient(WithName("echo"), WithTimeout(5*time.Second), WithTracerProvider(tp),
		WithPropagator(propagation.TraceContext{}), WithRegisterer(reg), WithBreaker(gobreakerAdapter{cb}))
	defer client.CloseIdleConnections()

	ctx, parent := tp.Tracer("test").Start(context.Background(), "caller")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url("/echo"), nil)
	resp, err := client.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	parent.End()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, parent.SpanContext().TraceID().String(), string(b), "the server joined the caller's trace")

	var clientSpan sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			clientSpan = s
		}
	}
	require.NotNil(t, clientSpan)
	require.Equal(t, "GET", clientSpan.Name())
	require.Equal(t, parent.SpanContext().SpanID(), clientSpan.Parent().SpanID())
	require.EqualValues(t, 200, attrs(clientSpan)["http.response.status_code"])

	h := &harness{t: t, reg: reg}
	c := h.metric("http_client_requests_total", map[string]string{"client": "echo", "method": "GET", "code": "200"})
	require.NotNil(t, c)
	require.EqualValues(t, 1, c.GetCounter().GetValue())
	require.NotNil(t, h.metric("http_client_request_duration_seconds", map[string]string{"client": "echo", "code": "200"}))

	// Two 503s trip the breaker; the 503s still reach the caller.
	failing.Store(true)
	for range 2 {
		resp, err := client.Get(srv.url("/echo"))
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	}
	before := hits.Load()
	_, err = client.Get(srv.url("/echo"))
	require.ErrorIs(t, err, gobreaker.ErrOpenState)
	require.ErrorContains(t, err, "fxhttp: circuit breaker rejected GET")
	require.Equal(t, before, hits.Load(), "an open circuit does not send the request")
	require.NotNil(t, h.metric("http_client_requests_total", map[string]string{"client": "echo", "code": "error"}))

	// A dead server is an error, counted.
	dead := NewClient(WithRegisterer(reg), WithTimeout(time.Second))
	_, err = dead.Get("http://127.0.0.1:" + freePort(t) + "/")
	require.Error(t, err)
	require.NotNil(t, h.metric("http_client_requests_total", map[string]string{"client": "default", "code": "error"}))
}

func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSFromCertAndKeyFiles(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t)
	h := start(t, []string{"MARTY_HTTP_TLS_CERT_FILE=" + certFile, "MARTY_HTTP_TLS_KEY_FILE=" + keyFile},
		AsRoute("GET /proto", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
		}))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + h.srv.Addr() + "/proto")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, "HTTP/2.0", string(b))
	require.Equal(t, "https", attrs(h.span("GET /proto"))["url.scheme"])

	_, err = newApp(t, []string{"MARTY_HTTP_TLS_CERT_FILE=/nonexistent/cert.pem", "MARTY_HTTP_TLS_KEY_FILE=" + keyFile})
	require.ErrorContains(t, err, "fxhttp: load TLS certificate /nonexistent/cert.pem")
}
