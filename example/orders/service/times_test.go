package service_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// PostgreSQL keeps microseconds: the order a create answers with has the
// timestamps a later read returns, over gRPC and REST.
func TestCreateAnswersTheStoredTimestamps(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	app := fxtest.New(t, service.Module, fxtest.Env("MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+dsn))

	c := ordersv1.NewOrderServiceClient(app.GRPC())
	created, err := c.CreateOrder(t.Context(), book(1))
	require.NoError(t, err)
	got, err := c.GetOrder(t.Context(), &ordersv1.GetOrderRequest{Id: created.GetId()})
	require.NoError(t, err)
	require.Equal(t, created.GetCreateTime().AsTime(), got.GetCreateTime().AsTime())
	require.Equal(t, created.GetUpdateTime().AsTime(), got.GetUpdateTime().AsTime())
	require.Zero(t, created.GetCreateTime().GetNanos()%1000, "microseconds, as stored")

	var body []byte
	code := app.HTTP().Do(http.MethodPost, "/v1/orders", json.RawMessage(
		`{"customerId":"carol","items":[{"sku":"mug","quantity":1,"unitPriceCents":800}]}`), &body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var rc, rg ordersv1.Order
	require.NoError(t, protojson.Unmarshal(body, &rc))
	code = app.HTTP().Do(http.MethodGet, "/v1/orders/"+rc.GetId(), nil, &body)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.NoError(t, protojson.Unmarshal(body, &rg))
	require.Equal(t, rc.GetCreateTime().AsTime(), rg.GetCreateTime().AsTime())
}
