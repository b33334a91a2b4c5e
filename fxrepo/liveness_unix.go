//go:build unix

package fxrepo

import (
	"errors"
	"net"
	"syscall"
)

// socketHasPending reports whether the connection's socket has bytes to
// read, is at end of stream or in error, without consuming anything and
// without waiting: the peek runs under Control, not Read, because pgx's
// background reader may be blocked in a Read on this socket (holding its
// read lock) while the connection sits in the pool.
func socketHasPending(c net.Conn) bool {
	sc, ok := underlying(c).(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	var buf [1]byte
	err = rc.Control(func(fd uintptr) {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil:
			pending = true // bytes an idle connection does not expect, or 0: the server closed
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK), errors.Is(rerr, syscall.EINTR):
		default:
			pending = true // reset, or any other socket error
		}
	})
	return pending || err != nil
}
