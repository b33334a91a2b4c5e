// Package service is the orders service of the martyfx example:
// orders.v1.OrderService over gRPC and REST (grpc-gateway), a hand-written
// GET /v1/summary route, the Order model through fxrepo (repository, unit of
// work, goose migrations), OrderCreated / OrderCancelled events through the
// fxevents bus inside the unit of work, a readiness check, a business metric
// and an alert rule, and the order saga with the payment service
// (SagaModule, saga.go). cmd main (example/orders) runs it with martyfx.Run.
package service

import (
	"embed"
	"io/fs"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/fxauth"
	"github.com/martyfx/martyfx/fxcache"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

//go:embed migrations
var migrations embed.FS

// Migrations are the goose migrations of the orders table, one directory
// per driver (postgres, sqlite).
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embedded tree always has it
	}
	return sub
}

// Module is the orders service; add it to martyfx.Modules. It includes
// fxcache.Module: GetOrder reads through the cache (in process by default,
// Redis with MARTY_CACHE_URL). It includes fxauth.Module too, which does
// nothing by default; with MARTY_AUTH_ISSUER and MARTY_AUTH_AUDIENCE set,
// the writes (CreateOrder, CancelOrder, and any method added later) need a
// valid bearer token, while the reads (GetOrder, ListOrders, WatchOrder and
// GET /v1/summary) stay public. The order saga is SagaModule, apart: it
// needs the outbox bus.
var Module = fx.Options(
	fxcache.Module,
	fxauth.Module,
	fx.Provide(NewMetrics, NewChanges, NewOrders),
	fxrepo.AsMigrations("orders", Migrations()),
	fxgrpc.AsService(&ordersv1.OrderService_ServiceDesc, NewServer),
	fxgrpc.AsGateway(ordersv1.RegisterOrderServiceHandler),
	// With authentication on (MARTY_AUTH_ISSUER): the whole service needs a
	// token, the reads are public. The REST gateway goes through these
	// gRPC rules.
	fxauth.AsRule("/orders.v1.OrderService/*", fxauth.Authenticated()),
	fxauth.AsRule(ordersv1.OrderService_GetOrder_FullMethodName, fxauth.Public()),
	fxauth.AsRule(ordersv1.OrderService_ListOrders_FullMethodName, fxauth.Public()),
	fxauth.AsRule(ordersv1.OrderService_WatchOrder_FullMethodName, fxauth.Public()),
	fxhttp.AsRoute("GET /v1/summary", NewSummaryHandler),
	fxauth.AsRule("GET /v1/summary", fxauth.Public()),
	fxmonitor.AsCollector(func(m *Metrics) prometheus.Collector { return m.Collector() }),
	fxmonitor.AsCheck(StoreCheck),
	fxmonitor.AsAlertRule(CancellationAlert),
)
