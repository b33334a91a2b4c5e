package natsjs

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// ServerOptions configure RunServer.
type ServerOptions struct {
	// StoreDir is the JetStream directory (required).
	StoreDir string
	// Port is the client port on 127.0.0.1; 0 picks a free one.
	Port int
	// Log receives the server's notices, warnings and errors; nil for none.
	Log *zap.Logger
	// ReadyTimeout bounds the wait for the server to accept connections
	// (default 10s).
	ReadyTimeout time.Duration
}

// RunServer starts an in-process nats-server with JetStream, listening on
// 127.0.0.1 only, and returns it once it accepts connections; its
// ClientURL() is the address to connect to. Stop it with Shutdown and
// WaitForShutdown. Module uses it for MARTY_NATS_EMBEDDED=true; tests use it
// to control a server of their own.
func RunServer(o ServerOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("natsjs: embedded server: a store directory is required")
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
			return nil, fmt.Errorf("natsjs: embedded server: listen on %s: %w", addr, err)
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
		NoLog:      o.Log == nil,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsjs: embedded server: %w", err)
	}
	if o.Log != nil {
		s.SetLoggerV2(serverLogger{o.Log.Named("nats-server").Sugar()}, false, false, false)
	}
	s.Start()
	if !s.ReadyForConnections(o.ReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsjs: embedded server on %s (store %s) not ready after %s", addr, o.StoreDir, o.ReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("natsjs: embedded server: JetStream did not start (store %s)", o.StoreDir)
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
func (s serverLogger) Tracef(format string, v ...any)  {}
