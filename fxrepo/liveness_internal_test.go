//go:build unix

package fxrepo

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = l.Close() }()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

func TestSocketHasPending(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	require.False(t, socketHasPending(client), "an idle connection has nothing to read")

	_, err := server.Write([]byte{'E'}) // a server's ErrorResponse starts so
	require.NoError(t, err)
	require.Eventually(t, func() bool { return socketHasPending(client) }, 5*time.Second, time.Millisecond)
	buf := make([]byte, 1)
	_, err = client.Read(buf)
	require.NoError(t, err)
	require.Equal(t, byte('E'), buf[0], "the peek consumed nothing")

	require.NoError(t, server.Close())
	require.Eventually(t, func() bool { return socketHasPending(client) }, 5*time.Second, time.Millisecond, "end of stream")

	require.False(t, socketHasPending(&net.TCPConn{}), "no socket: no answer, no panic")
}

// A reader blocked on the socket (pgx's background reader can be, while
// the connection is pooled) must not make the check wait.
func TestSocketHasPendingDoesNotWaitForABlockedReader(t *testing.T) {
	t.Parallel()
	client, server := tcpPair(t)
	reading := make(chan struct{})
	go func() {
		close(reading)
		_, _ = client.Read(make([]byte, 1))
	}()
	<-reading
	time.Sleep(10 * time.Millisecond) // let the reader block in Read
	done := make(chan bool, 1)
	go func() { done <- socketHasPending(client) }()
	select {
	case pending := <-done:
		require.False(t, pending)
	case <-time.After(10 * time.Second):
		t.Fatal("socketHasPending waited for the blocked reader (deadlock)")
	}
	_, _ = server.Write([]byte{'x'}) // release the reader
}
