package fxtest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS starts an embedded NATS server with JetStream on a free port of
// 127.0.0.1, storing its streams in a temporary directory, for the test's
// life, and returns its client URL ("nats://127.0.0.1:port"). Pass it to the
// app with Env("MARTY_NATS_URL=" + url).
func NATS(t testing.TB) string {
	t.Helper()
	s, err := startNATS(t.TempDir())
	if err != nil {
		t.Fatalf("fxtest: %v", err)
		return ""
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

func startNATS(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{
		ServerName: "fxtest",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		s.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS server: not ready for connections after 10s")
	}
	return s, nil
}
