package fxcore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type buffer struct{ bytes.Buffer }

func (b *buffer) Sync() error { return nil }

func TestLoggerFormatAndLevel(t *testing.T) {
	t.Parallel()
	info := ServiceInfo{Name: "orders", Version: "1.2.3", Environment: "production", InstanceID: "i-1"}

	var out buffer
	log, err := newLogger(LogConfig{Level: "warn"}, info, &out)
	require.NoError(t, err)
	log.Info("hidden")
	log.Warn("shown", zap.Int("n", 1))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 1, "info is below warn: %q", out.String())
	var entry map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &entry), "production defaults to JSON")
	require.Equal(t, "shown", entry["msg"])
	require.Equal(t, "warn", entry["level"])
	require.Equal(t, "orders", entry["service"])
	require.Equal(t, "1.2.3", entry["version"])
	require.Equal(t, "i-1", entry["instance"])
	require.EqualValues(t, 1, entry["n"])

	out.Reset()
	info.Environment = "development"
	log, err = newLogger(LogConfig{Level: "debug"}, info, &out)
	require.NoError(t, err)
	log.Debug("dev line")
	require.Contains(t, out.String(), "DEBUG")
	require.Contains(t, out.String(), "dev line")
	require.False(t, json.Valid(out.Bytes()), "development defaults to console")

	out.Reset()
	log, err = newLogger(LogConfig{Level: "info", Format: "json"}, info, &out)
	require.NoError(t, err)
	log.Info("forced json")
	require.True(t, json.Valid(bytes.TrimSpace(out.Bytes())))

	_, err = Load(mustSource(t, "MARTY_LOG_FORMAT=xml"), "log", DefaultLogConfig())
	require.EqualError(t, err, `fxcore: invalid MARTY_LOG_FORMAT="xml": want one of "json", "console"`)
	_, err = Load(mustSource(t, "MARTY_LOG_LEVEL=loud"), "log", DefaultLogConfig())
	require.EqualError(t, err, `fxcore: invalid MARTY_LOG_LEVEL="loud": want one of "debug", "info", "warn", "error"`)
}

func mustSource(t *testing.T, env ...string) *Source {
	t.Helper()
	src, err := NewSourceFrom("", env)
	require.NoError(t, err)
	return src
}

func serviceInfo(t *testing.T, env ...string) ServiceInfo {
	t.Helper()
	var info ServiceInfo
	app := fx.New(Module, fx.NopLogger, fx.Replace(mustSource(t, env...)), fx.Populate(&info))
	require.NoError(t, app.Err())
	return info
}

func TestServiceInfoFallbacks(t *testing.T) {
	t.Parallel()
	info := serviceInfo(t, "MARTY_SERVICE_NAME=orders", "OTEL_SERVICE_NAME=otel-name", "MARTY_SERVICE_VERSION=v9", "MARTY_ENV=production")
	require.Equal(t, "orders", info.Name, "MARTY_SERVICE_NAME wins")
	require.Equal(t, "v9", info.Version)
	require.Equal(t, "production", info.Environment)
	require.True(t, info.IsProduction())
	require.False(t, info.IsDevelopment())

	info = serviceInfo(t, "OTEL_SERVICE_NAME=otel-name")
	require.Equal(t, "otel-name", info.Name, "OTEL_SERVICE_NAME is the second choice")
	require.Equal(t, "development", info.Environment, "default environment")
	require.True(t, info.IsDevelopment())

	info = serviceInfo(t)
	bin := strings.TrimSuffix(filepath.Base(os.Args[0]), filepath.Ext(os.Args[0]))
	require.Equal(t, bin, info.Name, "binary name last")
	require.NotEmpty(t, info.Version, "version from build info or dev")

	other := serviceInfo(t)
	require.NotEmpty(t, info.InstanceID)
	require.NotEqual(t, info.InstanceID, other.InstanceID, "instance ids are unique")
}

func TestModuleProvidesRegistryAndLogger(t *testing.T) {
	var (
		reg  prometheus.Registerer
		gath prometheus.Gatherer
		log  *zap.Logger
	)
	app := fx.New(Module, fx.NopLogger, fx.Replace(mustSource(t, "MARTY_LOG_LEVEL=error")), fx.Populate(&reg, &gath, &log))
	require.NoError(t, app.Err())
	require.NotNil(t, log)
	require.False(t, log.Core().Enabled(zapcore.WarnLevel))
	mfs, err := gath.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	require.True(t, names["go_goroutines"], "Go collector registered")
	require.True(t, names["process_cpu_seconds_total"] || names["process_start_time_seconds"], "process collector registered")
	require.NotSame(t, prometheus.DefaultRegisterer, reg, "never the global registry")

	app = fx.New(Module, fx.NopLogger, fx.Replace(mustSource(t, "MARTY_STOP_TIMEOUT=-1s")))
	require.ErrorContains(t, app.Err(), `fxcore: invalid MARTY_STOP_TIMEOUT="-1s": want a positive duration`)
}

func TestStoppingRunsListenersOnce(t *testing.T) {
	t.Parallel()
	s := NewStopping()
	var calls atomic.Int32
	s.OnBegin(func() { calls.Add(1) })
	require.False(t, s.Begun())
	s.Begin()
	s.Begin()
	require.True(t, s.Begun())
	require.EqualValues(t, 1, calls.Load())
	<-s.Done()
	s.OnBegin(func() { calls.Add(10) })
	require.EqualValues(t, 11, calls.Load(), "late listeners run at once")
}

func TestShutdownOnErrorExitsNonZero(t *testing.T) {
	t.Parallel()
	var sd fx.Shutdowner
	app := fx.New(fx.NopLogger, fx.Populate(&sd))
	require.NoError(t, app.Start(context.Background()))
	ShutdownOnError(sd, zap.NewNop(), "loop", errors.New("died"))
	sig := <-app.Wait()
	require.Equal(t, 1, sig.ExitCode)
	require.NoError(t, app.Stop(context.Background()))
}

type recordingShutdowner struct{ opts []fx.ShutdownOption }

func (r *recordingShutdowner) Shutdown(opts ...fx.ShutdownOption) error {
	r.opts = append(r.opts, opts...)
	return nil
}

func TestFatalFuncLogsAndStopsTheApp(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.DebugLevel)
	sd := &recordingShutdowner{}
	FatalFunc(sd, zap.New(core), "outbox relay")(errors.New("boom"))
	require.Len(t, sd.opts, 1, "the app is asked to stop")
	entries := logs.FilterMessage("outbox relay failed; shutting down").All()
	require.Len(t, entries, 1)
	require.Equal(t, "boom", entries[0].ContextMap()["error"])

	core, logs = observer.New(zapcore.DebugLevel)
	FatalFunc(nil, zap.New(core), "consumer")(errors.New("gone"))
	require.Equal(t, 1, logs.FilterMessage("consumer failed").Len(), "without Fx it logs")
	FatalFunc(nil, nil, "x")(errors.New("no logger: no panic"))
}

func startWithEnv(t *testing.T, env ...string) (*observer.ObservedLogs, error) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	app := fx.New(Module, fx.NopLogger,
		fx.Replace(mustSource(t, env...)),
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fx.Provide(ProvideConfig[adminToken]("http", func() adminToken { return adminToken{} })),
		fx.Invoke(func(adminToken) {}),
	)
	require.NoError(t, app.Err())
	err := app.Start(context.Background())
	if err == nil {
		require.NoError(t, app.Stop(context.Background()))
	}
	return logs, err
}

func TestStartWarnsAboutUnreadVariables(t *testing.T) {
	t.Parallel()
	logs, err := startWithEnv(t, "MARTY_HTTP_ADMIN_TOKN=s3cret", "MARTY_STOP_TIMOUT=1s", "MARTY_HTTP_ADMIN_TOKEN=ok",
		"MARTY_TEST_POSTGRES_DSN=x", "MARTY_CONFIG_FILE=")
	require.NoError(t, err, "outside production a typo only warns")
	warned := logs.FilterMessage("no module reads this environment variable; is it misspelt?").All()
	require.Len(t, warned, 2, "test settings and MARTY_CONFIG_FILE are not config")
	require.Equal(t, map[string]any{"variable": "MARTY_HTTP_ADMIN_TOKN", "did_you_mean": "MARTY_HTTP_ADMIN_TOKEN"}, warned[0].ContextMap())
	require.Equal(t, map[string]any{"variable": "MARTY_STOP_TIMOUT", "did_you_mean": "MARTY_STOP_TIMEOUT"}, warned[1].ContextMap())
	for _, e := range logs.All() {
		require.NotContains(t, fmt.Sprint(e.ContextMap()), "s3cret", "values are never logged")
	}
}

func TestStartFailsInProductionOnAnUnreadSecretLookingVariable(t *testing.T) {
	t.Parallel()
	_, err := startWithEnv(t, "MARTY_ENV=production", "MARTY_HTTP_ADMIN_TOKN=s3cret", "MARTY_PAYMENTS_API_KEY=k", "MARTY_STOP_TIMOUT=1s")
	require.EqualError(t, err, "fxcore: no module reads MARTY_HTTP_ADMIN_TOKN (did you mean MARTY_HTTP_ADMIN_TOKEN?), MARTY_PAYMENTS_API_KEY; "+
		"in production a variable that looks like a secret must be read: fix its name or remove it")
	require.NotContains(t, err.Error(), "s3cret")

	logs, err := startWithEnv(t, "MARTY_ENV=production", "MARTY_STOP_TIMOUT=1s")
	require.NoError(t, err, "a variable that is no secret only warns, in production too")
	require.Equal(t, 1, logs.FilterMessage("no module reads this environment variable; is it misspelt?").Len())
}
