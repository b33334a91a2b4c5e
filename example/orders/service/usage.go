package service

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

// GrpcurlVersion is the grpcurl the printed commands run through `go run`.
const GrpcurlVersion = "v1.9.3"

// PrintUsage prints, once the servers listen, how to call the service with
// curl and grpcurl (development only; elsewhere one log line gives the
// addresses). Add it with fx.Invoke(service.PrintUsage).
func PrintUsage(lc fx.Lifecycle, info fxcore.ServiceInfo, log *zap.Logger, h *fxhttp.Server, g *fxgrpc.Server, auth fxauth.Config) {
	lc.Append(fx.StartHook(func() {
		log.Info("orders: serving",
			zap.String("http", h.Addr()), zap.String("admin", h.AdminAddr()), zap.String("grpc", g.Addr()))
		if info.IsDevelopment() {
			WriteUsage(os.Stdout, h.Addr(), h.AdminAddr(), g.Addr())
			fmt.Fprint(os.Stdout, AuthNote(auth))
		}
	}))
}

// AuthNote says, when authentication is on, that the writes of the printed
// commands need a bearer token and where to get one; "" when it is off.
func AuthNote(cfg fxauth.Config) string {
	if !cfg.Enabled() {
		return ""
	}
	return "Authentication is on (MARTY_AUTH_ISSUER=" + cfg.Issuer + "): the writes above (CreateOrder, CancelOrder) need\n" +
		"  -H \"Authorization: Bearer $TOKEN\" (grpcurl: -H \"authorization: Bearer $TOKEN\"), a token from that issuer\n" +
		"  (go run ./example/devissuer gives one in development); the reads need none.\n\n"
}

// WriteUsage writes the curl and grpcurl commands for the given listen
// addresses.
func WriteUsage(w io.Writer, httpAddr, adminAddr, grpcAddr string) {
	h, a, g := local(httpAddr), local(adminAddr), local(grpcAddr)
	grpcurl := "go run github.com/fullstorydev/grpcurl/cmd/grpcurl@" + GrpcurlVersion + " -plaintext"
	lines := []string{
		"",
		"orders is running. Try it (REST through the gRPC gateway, then gRPC with reflection):",
		"",
		"  curl -s -X POST http://" + h + "/v1/orders -H 'Content-Type: application/json' \\",
		`       -d '{"customerId":"alice","items":[{"sku":"book","quantity":2,"unitPriceCents":1250}]}'`,
		"  curl -s 'http://" + h + "/v1/orders?pageSize=10'",
		"  curl -s http://" + h + "/v1/orders/ID",
		"  curl -s -X POST http://" + h + `/v1/orders/ID:cancel -d '{"reason":"changed my mind"}'`,
		"  curl -s -X POST http://" + h + `/v1/orders -d '{"customerId":""}'      # 400 with the invalid fields`,
		"  curl -s http://" + h + "/v1/summary",
		"",
		"  " + grpcurl + " " + g + " list",
		"  " + grpcurl + ` -d '{"customer_id":"bob","items":[{"sku":"pen","quantity":3,"unit_price_cents":199}]}' \`,
		"       " + g + " orders.v1.OrderService/CreateOrder",
		"  " + grpcurl + ` -d '{"page_size":5}' ` + g + " orders.v1.OrderService/ListOrders",
		"  " + grpcurl + ` -d '{"id":"ID"}' ` + g + " orders.v1.OrderService/WatchOrder",
		"",
		"  curl -s http://" + a + "/readyz; curl -s http://" + a + "/metrics | grep orders_total",
		"",
		"(replace ID with an order's id)",
		"",
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// local turns a listen address (":8080", "[::]:8080", "0.0.0.0:8080") into
// one to call ("localhost:8080").
func local(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
