package fxtest

import (
	"testing"

	"github.com/martyfx/martyfx/fxevents/natsjs/natsdev"
)

// NATS starts an embedded NATS server with JetStream (natsdev.RunServer) on a
// free port of 127.0.0.1, storing its streams in a temporary directory, for
// the test's life, and returns its client URL ("nats://127.0.0.1:port").
// Hand it to an app that includes natsjs.Module:
//
//	url := fxtest.NATS(t)
//	app := fxtest.New(t, natsjs.Module, fxtest.Env("MARTY_NATS_URL="+url), ...)
func NATS(t testing.TB) string {
	t.Helper()
	s, err := natsdev.RunServer(natsdev.ServerOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatalf("fxtest: embedded NATS server: %v", err)
		return ""
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}
