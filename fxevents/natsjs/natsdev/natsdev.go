// Package natsdev runs a NATS server with JetStream inside the process, for
// development and tests. It is the only martyfx package that links
// nats-server: natsjs talks to a server and never embeds one, so a service
// built for a real NATS carries no server code.
//
// With Fx, add Module next to natsjs.Module in a development build; then
// MARTY_NATS_EMBEDDED=true starts the server at start and stops it at stop:
//
//	fx.New(martyfx.Modules..., natsjs.Module, natsdev.Module).Run()
//
// Without Fx, hand Embedded to natsjs.NewConn:
//
//	conn, err := natsjs.NewConn(cfg, natsjs.ConnOptions{EmbeddedServer: natsdev.Embedded})
//
// Tests that need a server of their own call RunForTest (started for the
// test's life) or RunServer (to stop and restart it).
package natsdev

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxevents/natsjs"
)

// Module provides Embedded as the app's natsjs.EmbeddedServer, so that
// MARTY_NATS_EMBEDDED=true works (MARTY_NATS_STORE_DIR,
// MARTY_NATS_EMBEDDED_PORT). Without MARTY_NATS_EMBEDDED it does nothing.
var Module = fx.Module("martyfx.natsdev",
	fx.Provide(func() natsjs.EmbeddedServer { return Embedded }),
)

// Embedded is a natsjs.EmbeddedServer: it runs RunServer on
// cfg.EmbeddedPort (0: a free port), storing in cfg.StoreDir or, when that
// is empty, in a temporary directory that stop removes.
func Embedded(_ context.Context, cfg natsjs.Config, log *zap.Logger) (url string, stop func(), err error) {
	dir, tmp := cfg.StoreDir, ""
	if dir == "" {
		if dir, err = os.MkdirTemp("", "martyfx-nats-*"); err != nil {
			return "", nil, fmt.Errorf("natsdev: embedded server store: %w", err)
		}
		tmp = dir
	}
	removeTmp := func() {
		if tmp != "" {
			_ = os.RemoveAll(tmp)
		}
	}
	s, err := RunServer(ServerOptions{StoreDir: dir, Port: cfg.EmbeddedPort, Logger: log})
	if err != nil {
		removeTmp()
		return "", nil, err
	}
	if log != nil {
		log.Debug("embedded nats-server store", zap.String("store_dir", dir))
	}
	return s.ClientURL(), func() {
		s.Shutdown()
		s.WaitForShutdown()
		removeTmp()
	}, nil
}

// ServerOptions configure RunServer.
type ServerOptions struct {
	// StoreDir is the JetStream directory (required).
	StoreDir string
	// Port is the client port on 127.0.0.1; 0 picks a free one.
	Port int
	// Logger receives the server's notices (at debug level), warnings and
	// errors; nil: none.
	Logger *zap.Logger
	// ReadyTimeout bounds the wait for the server to accept connections;
	// 0: 10s.
	ReadyTimeout time.Duration
	// TLS, when set, makes the server require TLS with this configuration
	// (with ClientAuth set to require client certificates: mutual TLS).
	TLS *tls.Config
}

// RunServer starts an in-process nats-server with JetStream, listening on
// 127.0.0.1 only, and returns it once it accepts connections; its
// ClientURL() is the address to connect to. Stop it with Shutdown and
// WaitForShutdown.
func RunServer(o ServerOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsdev: embedded server: a store directory is required")
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 10 * time.Second
	}
	port := o.Port
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// nats-server only logs a port in use; check it to fail clearly.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("natsdev: embedded server: listen on %s: %w", addr, err)
		}
		_ = l.Close()
	}
	opts := &server.Options{
		ServerName: "martyfx-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
	}
	if o.TLS != nil {
		opts.TLSConfig = o.TLS
		opts.TLS = true
		opts.TLSVerify = o.TLS.ClientAuth == tls.RequireAndVerifyClientCert
		opts.TLSTimeout = 2
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsdev: embedded server: %w", err)
	}
	if o.Logger != nil {
		s.SetLoggerV2(serverLogger{o.Logger.Named("nats-server").Sugar()}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(o.ReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsdev: embedded server on %s (store %s) not ready after %s", addr, o.StoreDir, o.ReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsdev: embedded server: JetStream did not start (store %s)", o.StoreDir)
	}
	return s, nil
}

// serverLogger routes nats-server's log to zap.
type serverLogger struct{ l *zap.SugaredLogger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debugf(format, v...) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warnf(format, v...) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Errorf(format, v...) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Errorf(format, v...) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debugf(format, v...) }
func (s serverLogger) Tracef(string, ...any)           {}

// RunForTest starts an embedded NATS server with JetStream (RunServer) on a
// free port of 127.0.0.1, storing its streams in the test's temporary
// directory, stops it at the test's cleanup, and returns its client URL
// ("nats://127.0.0.1:port"). Hand it to an app that includes natsjs.Module:
//
//	url := natsdev.RunForTest(t)
//	app := fxtest.New(t, natsjs.Module, fxtest.Env("MARTY_NATS_URL="+url), ...)
//
// It lives here rather than in fxtest so that a test binary links
// nats-server only when its tests start one.
func RunForTest(t testing.TB) string {
	t.Helper()
	s, err := RunServer(ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("natsdev: embedded NATS server: %v", err)
		return ""
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}
