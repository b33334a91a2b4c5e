// Command devissuer is a development OIDC issuer for the example (see
// example/internal/devissuer): it serves discovery, the JWKS and a token
// endpoint that gives any caller a token, on 127.0.0.1:8180 by default.
//
//	go run ./example/devissuer
//
// Its key lives in memory: tokens stop working when it restarts. For
// development only; it checks no credentials.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/martyfx/martyfx/example/internal/devissuer"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8180", "listen address (keep it on loopback)")
	audience := flag.String("audience", "orders-api", `the tokens' "aud" (MARTY_AUTH_AUDIENCE)`)
	flag.Parse()
	if err := run(*addr, *audience); err != nil {
		fmt.Fprintln(os.Stderr, "devissuer:", err)
		os.Exit(1)
	}
}

func run(addr, audience string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	url := "http://" + net.JoinHostPort(host, port)
	is, err := devissuer.New(url, audience)
	if err != nil {
		_ = ln.Close()
		return err
	}
	fmt.Printf(`development OIDC issuer at %[1]s (any caller gets a token; never expose it)

  export MARTY_AUTH_ISSUER=%[1]s MARTY_AUTH_AUDIENCE=%[2]s
  TOKEN=$(curl -s -d grant_type=client_credentials -d client_id=alice %[1]s/token | jq -r .access_token)

`, url, audience)
	srv := &http.Server{Handler: is.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
