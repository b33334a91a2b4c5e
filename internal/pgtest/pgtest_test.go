package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestNewDatabaseIsFreshAndUsable(t *testing.T) {
	a := NewDatabase(t)
	b := NewDatabase(t)
	require.NotEqual(t, a, b)
	conn, err := pgx.Connect(context.Background(), a)
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close(context.Background())) }()
	var n int
	require.NoError(t, conn.QueryRow(context.Background(),
		"SELECT count(*) FROM information_schema.tables WHERE table_schema='public'").Scan(&n))
	require.Zero(t, n)
}
