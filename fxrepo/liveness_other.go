//go:build !unix

package fxrepo

import "net"

// socketHasPending is not available on this platform: pgx's idle rule alone
// decides.
func socketHasPending(net.Conn) bool { return false }
