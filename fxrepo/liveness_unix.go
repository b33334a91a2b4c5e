//go:build unix

package fxrepo

import (
	"errors"
	"net"
	"syscall"
)

// socketHasPending reports whether the connection's socket has bytes to
// read, is at end of stream or in error, without consuming anything.
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
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil:
			pending = true // n > 0: unexpected data; n == 0: the server closed
			_ = n
		case errors.Is(rerr, syscall.EAGAIN), errors.Is(rerr, syscall.EWOULDBLOCK), errors.Is(rerr, syscall.EINTR):
		default:
			pending = true // reset, or any other socket error
		}
		return true // never wait for readiness
	})
	return pending || err != nil
}
