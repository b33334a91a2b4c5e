package bench

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxtest/load"
)

// authIssuer serves a JWKS with one key and signs tokens with it.
type authIssuer struct {
	srv  *httptest.Server
	key  crypto.Signer
	alg  jose.SignatureAlgorithm
	kid  string
	audi string
}

func newAuthIssuer(b *testing.B, alg jose.SignatureAlgorithm) *authIssuer {
	is := &authIssuer{alg: alg, kid: "k1", audi: "bench-api"}
	var err error
	if alg == jose.ES256 {
		is.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		is.key, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	if err != nil {
		b.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: is.key.Public(), KeyID: is.kid, Algorithm: string(alg), Use: "sig"}}})
	})
	is.srv = httptest.NewServer(mux)
	b.Cleanup(is.srv.Close)
	return is
}

func (is *authIssuer) token(b *testing.B) string {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: is.alg, Key: is.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", is.kid))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(s).Claims(map[string]any{
		"iss": is.srv.URL, "aud": is.audi, "sub": "alice", "scope": "bench",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}).Serialize()
	if err != nil {
		b.Fatal(err)
	}
	return tok
}

func (is *authIssuer) auth(b *testing.B, rules ...string) *fxauth.Auth {
	cfg := fxauth.DefaultConfig()
	cfg.Issuer, cfg.Audience, cfg.Rules = is.srv.URL, []string{is.audi}, rules
	a, err := fxauth.NewAuth(cfg, fxauth.Options{Registerer: prometheus.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkAuthVerify: one token verification with the issuer's key
// cached (RS256 with a 2048-bit key, ES256 on P-256), the same token
// every time.
func BenchmarkAuthVerify(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		b.Run(string(alg), func(b *testing.B) {
			is := newAuthIssuer(b, alg)
			a := is.auth(b)
			tok := is.token(b)
			ctx := context.Background()
			if _, err := a.Verify(ctx, tok); err != nil { // fetches the keys
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := a.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// grpcAuthServer is fxgrpc's default chain with fxauth's check (RS256
// bearer token, every method authenticated).
func grpcAuthServer(b *testing.B, a *fxauth.Auth, ratio float64) string {
	cfg := fxgrpc.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	tp := grpcBenchTracer(ratio)
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv, err := fxgrpc.NewServer(cfg, fxgrpc.ServerOptions{
		Logger:         grpcBenchLogger(),
		Info:           fxcore.ServiceInfo{Environment: "production"},
		Registerer:     prometheus.NewRegistry(),
		TracerProvider: tp,
		Auth:           a.GRPCAuthFunc(),
		Services:       []fxgrpc.Service{{Desc: &testgrpc.BenchmarkService_ServiceDesc, Impl: grpcBenchService{}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Stop(context.Background()) })
	return srv.Addr()
}

// BenchmarkAuthGRPCUnary: BenchmarkGRPCUnary's load (16 callers, one
// connection, interleaved rounds) on bare grpc-go, fxgrpc's default chain
// and that chain with fxauth verifying an RS256 bearer token on every
// call, at 1% trace sampling. Every variant gets the same metadata.
func BenchmarkAuthGRPCUnary(b *testing.B) {
	is := newAuthIssuer(b, jose.RS256)
	a := is.auth(b, "/grpc.testing.BenchmarkService/*=authenticated")
	tok := is.token(b)
	if _, err := a.Verify(context.Background(), tok); err != nil {
		b.Fatal(err)
	}
	type variant struct{ name, addr string }
	vs := []variant{
		{name: "bare", addr: grpcBareServer(b)},
		{name: "martyfx-1%", addr: grpcMartyfxServer(b, grpcBenchTracer(0.01), "info")},
		{name: "martyfx-auth-1%", addr: grpcAuthServer(b, a, 0.01)},
	}
	req := &testgrpc.SimpleRequest{ResponseSize: 32}
	md := metadata.Pairs("authorization", "Bearer "+tok)
	targets := make([]load.Target, len(vs))
	for i, v := range vs {
		conn, err := grpc.NewClient(v.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		client := testgrpc.NewBenchmarkServiceClient(conn)
		targets[i] = load.Func(v.name, func(ctx context.Context) error {
			_, err := client.UnaryCall(metadata.NewOutgoingContext(ctx, md), req)
			return err
		})
	}
	const rounds = 40
	b.ResetTimer()
	c, err := load.Compare(context.Background(), targets,
		load.Workers(grpcCallers), load.Count(max(1, b.N/rounds)), load.Rounds(rounds), load.Seed(1),
		load.WarmupOps(500))
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	for i, r := range c.Results {
		if r.Failed > 0 {
			b.Errorf("%s: %d calls failed\n%s", r.Name, r.Failed, c)
		}
		b.ReportMetric(r.Throughput, r.Name+"-calls/s")
		b.ReportMetric(c.Ratios[i].Throughput, r.Name+"-x-bare")
		b.ReportMetric(float64(r.P50)/1e3, r.Name+"-p50-µs")
	}
	if b.N >= 1000 {
		b.Logf("\n%s", fmt.Sprint(c))
	}
}
