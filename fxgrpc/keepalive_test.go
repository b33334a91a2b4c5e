package fxgrpc_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/connectivity"

	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

// leavesReady reports whether the client connection leaves READY (the
// server closed its transport) within d.
func leavesReady(t *testing.T, env []string, d time.Duration) bool {
	t.Helper()
	a := start(t, env)
	conn := dial(t, a.srv.Addr())
	_, err := testpb.NewEchoClient(conn).Echo(ctxT(t), &testpb.EchoRequest{Message: "x", Repeat: 1})
	require.NoError(t, err) // so the connection was READY
	if conn.GetState() != connectivity.Ready {
		return true // already closed (a slow machine can take the 200 ms to get here)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return conn.WaitForStateChange(ctx, connectivity.Ready)
}

// The keepalive settings reach grpc-go: an idle connection is closed after
// MARTY_GRPC_MAX_CONNECTION_IDLE, an old one after MARTY_GRPC_MAX_CONNECTION_AGE
// (plus its grace), and with the defaults the connection stays up.
func TestKeepaliveConnectionLimits(t *testing.T) {
	require.True(t, leavesReady(t, []string{"MARTY_GRPC_MAX_CONNECTION_IDLE=200ms"}, 5*time.Second),
		"an idle connection is closed by the server")
	require.True(t, leavesReady(t, []string{"MARTY_GRPC_MAX_CONNECTION_AGE=200ms", "MARTY_GRPC_MAX_CONNECTION_AGE_GRACE=100ms"}, 5*time.Second),
		"an old connection is closed by the server")
	require.False(t, leavesReady(t, nil, time.Second), "the defaults keep the connection")
}
