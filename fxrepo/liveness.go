package fxrepo

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
)

// pingIdleAfter is pgx's own default: a pooled connection idle longer than
// this is pinged before it is reused.
const pingIdleAfter = time.Second

// shouldPing decides, each time database/sql reuses a pooled PostgreSQL
// connection, whether to ping it first. Besides pgx's default (idle longer
// than a second) it pings a connection whose socket has something to read:
// an idle connection expects nothing from the server, so pending bytes (the
// server's FATAL "terminating connection" message) or an end of stream mean
// the backend is gone. The ping then fails, database/sql discards the
// connection and takes another one or dials, so the statement is never
// sent on a dead connection and the caller sees no error. The check is one
// non-blocking peek at the socket (no read, no round trip). When pgx's own
// background reader (started by a slow write) has already taken the bytes,
// the peek sees nothing and pgx's rule alone decides; the unit of work's
// retry of a transaction whose connection failed covers that case.
func shouldPing(_ context.Context, p stdlib.ShouldPingParams) bool {
	if p.IdleDuration > pingIdleAfter {
		return true
	}
	if p.Conn == nil || p.Conn.PgConn() == nil {
		return false
	}
	return socketHasPending(p.Conn.PgConn().Conn())
}

// underlying unwraps a TLS connection to its socket: any TLS record waiting
// on an idle connection is just as suspect.
func underlying(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}
