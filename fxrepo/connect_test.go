package fxrepo_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/internal/pgtest"
)

// TestLateDatabaseIsWaitedFor: PostgreSQL becomes reachable 700ms after the
// app starts (a proxy starts listening late, as a database pod would);
// start retries with backoff and succeeds.
func TestLateDatabaseIsWaitedFor(t *testing.T) {
	t.Parallel()
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	upstream := u.Host
	addr := closedPort(t)
	u.Host = addr

	var wg sync.WaitGroup
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); wg.Wait() })
	wg.Go(func() {
		select {
		case <-time.After(700 * time.Millisecond):
		case <-stop:
			return
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen late on %s: %v", addr, err)
			return
		}
		wg.Go(func() { <-stop; _ = l.Close() })
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { proxy(c, upstream, stop) })
		}
	})

	core, logs := observer.New(zapcore.InfoLevel)
	var db *gorm.DB
	app := newApp(t, []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + u.String(), "MARTY_DB_CONNECT_BACKOFF=50ms", "MARTY_DB_CONNECT_BACKOFF_MAX=200ms"},
		fx.Decorate(func() *zap.Logger { return zap.New(core) }), fx.Populate(&db))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, app.Start(ctx))
	require.NoError(t, db.Exec("SELECT 1").Error)
	require.NotEmpty(t, logs.FilterMessage("database not reachable yet; retrying").All())
	require.Len(t, logs.FilterMessage("database reachable").All(), 1)
	require.NoError(t, app.Stop(context.Background()))
}

func proxy(c net.Conn, upstream string, stop <-chan struct{}) {
	defer func() { _ = c.Close() }()
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer func() { _ = up.Close() }()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	select {
	case <-done:
	case <-stop:
	}
	_ = c.Close()
	_ = up.Close()
	<-done
}
