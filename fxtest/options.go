package fxtest

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// DefaultModules are the modules New builds the app from unless WithModules
// names others: martyfx.Modules, every martyfx module except the NATS
// transport (add natsjs.Module with NATS(t) to test against JetStream).
var DefaultModules = martyfx.Modules

// defaultEnv is the test environment every app starts from; Env adds to it
// and overrides it.
var defaultEnv = []string{
	"MARTY_ENV=test",
	"MARTY_SERVICE_NAME=fxtest",
	"MARTY_LOG_LEVEL=debug",
	"MARTY_HTTP_ADDR=127.0.0.1:0",
	"MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
	"MARTY_GRPC_ADDR=127.0.0.1:0",
	"MARTY_DB_DRIVER=sqlite",
	"MARTY_DB_DSN=:memory:",
	"MARTY_EVENTS_SYNC=true",
	// Host-dependent checks and samplers would make tests flaky on a busy
	// machine and start background goroutines nobody asserts on.
	"MARTY_MONITOR_SYSTEM_ENABLED=false",
	"MARTY_MONITOR_DISK_ENABLED=false",
	"MARTY_MONITOR_MEMORY_ENABLED=false",
	"OTEL_TRACES_EXPORTER=none",
}

// settings are what the harness options (Env, WithModules, WaitTimeout)
// change; they are read before the app is built.
type settings struct {
	modules    []fx.Option
	modulesSet bool
	env        []string
	wait       time.Duration
}

// harnessOption is a harness option: an fx.Option (so New keeps the
// signature of fx.New) that New recognises by its type and reads. The
// fx.Option it embeds is an fx.Error, so a harness option that reaches Fx
// (nested in fx.Options or fx.Module, or given to fx.New) fails the app
// with a message saying where it belongs.
type harnessOption struct {
	fx.Option
	name  string
	apply func(*settings)
}

func (o harnessOption) String() string { return o.name }

func newHarnessOption(name string, apply func(*settings)) fx.Option {
	return harnessOption{
		Option: fx.Error(fmt.Errorf("fxtest: %s is an option of fxtest.New: pass it to fxtest.New directly, not inside fx.Options or fx.Module", name)),
		name:   name,
		apply:  apply,
	}
}

// splitOptions separates the harness options from the Fx options.
func splitOptions(opts []fx.Option) (settings, []fx.Option) {
	s := settings{wait: 5 * time.Second}
	var rest []fx.Option
	for _, o := range opts {
		switch o := o.(type) {
		case nil:
		case harnessOption:
			o.apply(&s)
		default:
			rest = append(rest, o)
		}
	}
	return s, rest
}

// WithModules builds the app from these modules instead of DefaultModules
// (include fxcore.Module). Accessors of modules that are not there fail the
// test with a message saying which module to add.
func WithModules(modules ...fx.Option) fx.Option {
	return newHarnessOption("fxtest.WithModules", func(s *settings) {
		s.modules = append(s.modules, modules...)
		s.modulesSet = true
	})
}

// Env sets environment variables ("MARTY_GRPC_MAX_RECV_MSG_SIZE=1024") in the
// app's config Source, over the test defaults. The process environment is
// never read.
func Env(kv ...string) fx.Option {
	return newHarnessOption("fxtest.Env", func(s *settings) { s.env = append(s.env, kv...) })
}

// WaitTimeout sets how long the Require* assertions and WaitHandled wait for
// what they look for (default 5s) before failing the test.
func WaitTimeout(d time.Duration) fx.Option {
	return newHarnessOption("fxtest.WaitTimeout", func(s *settings) { s.wait = d })
}

// Async runs the memory bus in its queued mode (MARTY_EVENTS_SYNC=false):
// Publish returns once handlers' queues accepted the events; call
// App.WaitHandled before asserting on what the handlers did.
func Async() fx.Option {
	return newHarnessOption("fxtest.Async", func(s *settings) { s.env = append(s.env, "MARTY_EVENTS_SYNC=false") })
}

// Postgres points the app at a fresh PostgreSQL database created from
// MARTY_TEST_POSTGRES_DSN and dropped when the test ends; it skips the test
// with a message when the variable is unset.
func Postgres(t testing.TB) fx.Option {
	t.Helper()
	dsn := pgtest.NewDatabase(t)
	return newHarnessOption("fxtest.Postgres", func(s *settings) {
		s.env = append(s.env, "MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+dsn)
	})
}

// Replace replaces values in the graph by values of the same type, like
// fx.Replace but applied inside the app so every module sees them. Wrap a
// value with As to replace an interface type (fxevents.Bus, fxrepo.UnitOfWork).
func Replace(values ...any) fx.Option { return fx.Replace(values...) }

// As marks v as the replacement of the interface type I, for Replace:
//
//	fxtest.Replace(fxtest.As[fxrepo.UnitOfWork](fakeUoW))
func As[I any](v I) any { return fx.Annotate(v, fx.As(new(I))) }

// Decorate changes values of the graph with functions that take a value
// (and other dependencies) and return its replacement, like fx.Decorate;
// interface types work as they are (func(fxevents.Bus) fxevents.Bus).
// A type may be decorated once per test.
func Decorate(fns ...any) fx.Option { return fx.Decorate(fns...) }

// Config changes fields of a module's config struct, keeping the others
// (defaults and Env values):
//
//	fxtest.Config(func(c *fxgrpc.Config) { c.MaxRecvMsgSize = 1024 })
//
// The change is applied after loading, so it is not validated again. A
// config type may be changed by one Config per test.
func Config[T any](fn func(*T)) fx.Option {
	return fx.Decorate(func(c T) T {
		fn(&c)
		return c
	})
}
