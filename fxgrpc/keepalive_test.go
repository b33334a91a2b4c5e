package fxgrpc_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/http2"
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
	t.Parallel()
	require.True(t, leavesReady(t, []string{"MARTY_GRPC_MAX_CONNECTION_IDLE=200ms"}, 5*time.Second),
		"an idle connection is closed by the server")
	require.True(t, leavesReady(t, []string{"MARTY_GRPC_MAX_CONNECTION_AGE=200ms", "MARTY_GRPC_MAX_CONNECTION_AGE_GRACE=100ms"}, 5*time.Second),
		"an old connection is closed by the server")
	require.False(t, leavesReady(t, nil, time.Second), "the defaults keep the connection")
}

// goAway is a GOAWAY the server sent.
type goAway struct {
	code  http2.ErrCode
	debug string
}

// pingFlood opens a raw HTTP/2 connection to addr with no call on it, sends
// n PINGs gap apart, and returns the GOAWAY the server answered with (nil
// when it acknowledged every ping and kept the connection).
func pingFlood(t *testing.T, addr string, n int, gap time.Duration) *goAway {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte(http2.ClientPreface))
	require.NoError(t, err)
	fr := http2.NewFramer(c, c)
	require.NoError(t, fr.WriteSettings())
	frames := make(chan any, 64) // *goAway or a ping ack
	go func() {
		defer close(frames)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.GoAwayFrame: // the framer reuses its frames: copy
				frames <- &goAway{code: f.ErrCode, debug: string(f.DebugData())}
			case *http2.PingFrame:
				if f.IsAck() {
					frames <- f.Data
				}
			}
		}
	}()
	acks := 0
	for i := range n {
		require.NoError(t, fr.WritePing(false, [8]byte{byte(i)}))
		time.Sleep(gap)
	}
	deadline := time.After(2 * time.Second)
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				return nil
			}
			if g, ok := f.(*goAway); ok {
				return g
			}
			if acks++; acks == n {
				return nil
			}
		case <-deadline:
			t.Fatalf("%d of %d pings acknowledged and no GOAWAY", acks, n)
		}
	}
}

// The enforcement policy reaches grpc-go: by default a client pinging a
// connection with no call on it is told "too_many_pings" and disconnected;
// with pings permitted without calls and a short minimum interval, the same
// pings are acknowledged.
func TestKeepaliveEnforcementPolicy(t *testing.T) {
	t.Parallel()
	strict := start(t, nil)
	g := pingFlood(t, strict.srv.Addr(), 5, time.Millisecond)
	require.NotNil(t, g, "the default policy refuses pings without calls")
	require.Equal(t, http2.ErrCodeEnhanceYourCalm, g.code)
	require.Equal(t, "too_many_pings", g.debug)

	lenient := start(t, []string{"MARTY_GRPC_KEEPALIVE_PERMIT_WITHOUT_STREAM=true", "MARTY_GRPC_KEEPALIVE_MIN_TIME=1ms"})
	require.Nil(t, pingFlood(t, lenient.srv.Addr(), 5, 20*time.Millisecond), "pings within the policy are acknowledged")
}
