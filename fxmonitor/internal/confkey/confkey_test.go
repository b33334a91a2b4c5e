package confkey

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKey(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{
		"payments": "payments", "Payments-API": "payments_api", "grpc.payments": "grpc_payments",
		"orders store": "orders_store", "Orders.DB": "orders_db",
	} {
		require.Equal(t, want, Key(name), name)
	}
}
