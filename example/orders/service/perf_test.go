package service_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/fxtest/load"
)

// TestPerfCreateOrderREST creates orders through the REST gateway (POST
// /v1/orders → grpc-gateway → OrderService.CreateOrder → unit of work with
// the OrderCreated event) at a constant 100 per second for 5 seconds, after
// a second of warm-up, on SQLite and on PostgreSQL. No request may fail and
// every order is stored; the report (p50 … p99.9, CPU and allocations per
// request) is in the test log, and the chart in MARTY_ARTIFACTS_DIR.
//
//	MARTY_TEST_PERF=1 go test -run Perf -v ./example/orders/service/
func TestPerfCreateOrderREST(t *testing.T) {
	fxtest.Performance(t)
	body := json.RawMessage(`{"customerId":"perf","items":[{"sku":"mug","quantity":2,"unitPriceCents":800}]}`)
	for _, db := range []struct {
		name string
		opts func(t *testing.T) []fx.Option
	}{
		{"sqlite", func(*testing.T) []fx.Option { return nil }},
		{"postgres", func(t *testing.T) []fx.Option {
			fxtest.Integration(t, fxtest.NeedPostgres)
			return []fx.Option{fxtest.Postgres(t)}
		}},
	} {
		t.Run(db.name, func(t *testing.T) {
			opts := append(db.opts(t), service.Module, fxtest.Env("MARTY_LOG_LEVEL=info"))
			app := fxtest.New(t, opts...)

			res := load.Test(t, load.HTTP(app.HTTP(), http.MethodPost, "/v1/orders", body),
				load.Rate(100), load.For(5*time.Second), load.Warmup(time.Second), load.Timeout(10*time.Second))
			load.RequireErrorRateBelow(t, res, 0)
			t.Logf("create order over REST on %s: p99 %v at %.0f/s", db.name, res.P99, res.Throughput)
			load.RequireP99Below(t, res, 250*time.Millisecond)

			var stored int64
			require.NoError(t, app.DB().Raw("SELECT COUNT(*) FROM orders").Scan(&stored).Error)
			require.Equal(t, int64(500+100), stored, "every order of the run and of the warm-up")
		})
	}
}
