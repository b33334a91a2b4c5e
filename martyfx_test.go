package martyfx

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

func TestMain(m *testing.M) {
	// In a child process started by a test, run the scenario instead.
	if scenario := os.Getenv("MARTYFX_TEST_SCENARIO"); scenario != "" {
		runScenario(scenario)
		return
	}
	goleak.VerifyTestMain(m)
}

func runScenario(name string) {
	switch name {
	case "signal":
		Run(fx.Invoke(func(lc fx.Lifecycle, log *zap.Logger) {
			lc.Append(fx.StartHook(func() { log.Info("scenario started") }))
		}))
	case "start-fails":
		Run(fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.StartHook(func() error { return errors.New("database unreachable") }))
		}))
	case "shutdowner":
		Run(fx.Invoke(func(lc fx.Lifecycle, sd fx.Shutdowner) {
			lc.Append(fx.StartHook(func() { go func() { _ = sd.Shutdown(fx.ExitCode(3)) }() }))
		}))
	case "stop-too-slow":
		Run(fx.Invoke(func(lc fx.Lifecycle, log *zap.Logger) {
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error { log.Info("scenario started"); return nil },
				OnStop:  func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() },
			})
		}))
	case "stop-order":
		Run(fxgrpc.AsService(&idleService, struct{}{}), fx.Invoke(func(lc fx.Lifecycle, h *fxhttp.Server, g *fxgrpc.Server, log *zap.Logger) {
			// Appended last, so Fx runs it first (a relay or a database
			// would): the servers have stopped by then.
			lc.Append(fx.StopHook(func() {
				log.Info("scenario stop hook", zap.Bool("servers_stopped", refused(h.Addr()) && refused(g.Addr()) && refused(h.AdminAddr())))
			}))
		}))
	case "slow-start":
		// A start hook after the servers' that waits for SIGUSR1: the
		// servers listen, but the pod must not be ready yet.
		Run(fx.Invoke(func(lc fx.Lifecycle, h *fxhttp.Server, log *zap.Logger) {
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				usr1 := make(chan os.Signal, 1)
				signal.Notify(usr1, syscall.SIGUSR1)
				defer signal.Stop(usr1)
				log.Info("scenario waiting", zap.String("admin", h.AdminAddr()))
				select {
				case <-usr1:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}))
		}))
	case "bad-config":
		Run()
	case "route-func":
		Run(fxhttp.AsRoute("GET /hello", hello))
	case "route-wrong-type":
		Run(fxhttp.AsRoute("GET /hello", newNumber))
	}
	os.Exit(99) // Run must never return
}

// idleService is a gRPC service without methods: the gRPC server listens
// only when it hosts a service.
var idleService = grpc.ServiceDesc{ServiceName: "martyfx.test.Idle", HandlerType: (*any)(nil)}

func hello(http.ResponseWriter, *http.Request) {}

func newNumber() int { return 1 }

func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

type result struct {
	code   int
	output string
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startScenario(t *testing.T, name string, env ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"MARTYFX_TEST_SCENARIO=" + name, "MARTY_LOG_FORMAT=json"}, env...)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	return cmd, out
}

func wait(t *testing.T, cmd *exec.Cmd, out *syncBuffer) result {
	t.Helper()
	err := cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("wait: %v", err)
	}
	return result{code: cmd.ProcessState.ExitCode(), output: out.String()}
}

// scenario runs a scenario to its end.
func scenario(t *testing.T, name string, env ...string) result {
	t.Helper()
	cmd, out := startScenario(t, name, env...)
	return wait(t, cmd, out)
}

func waitForLog(t *testing.T, out *syncBuffer, text string) {
	t.Helper()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), text) }, 20*time.Second, 10*time.Millisecond, "never logged %q: %s", text, out)
}

func TestRunExitsZeroOnSIGTERM(t *testing.T) {
	cmd, out := startScenario(t, "signal")
	waitForLog(t, out, "martyfx: started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	res := wait(t, cmd, out)
	require.Equal(t, 0, res.code, res.output)
	require.Contains(t, res.output, `"msg":"scenario started"`, "JSON logs as configured")
}

func TestRunStopsTheServersBeforeTheOtherModules(t *testing.T) {
	cmd, out := startScenario(t, "stop-order", "MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
		"MARTY_GRPC_ADDR=127.0.0.1:0", "MARTY_DB_DSN=:memory:", "MARTY_HTTP_DRAIN_DELAY=50ms", "MARTY_GRPC_DRAIN_DELAY=100ms")
	waitForLog(t, out, "martyfx: started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	res := wait(t, cmd, out)
	require.Equal(t, 0, res.code, res.output)
	require.Contains(t, res.output, `"servers_stopped":true`, "the servers stopped before the other stop hooks")
	require.Equal(t, 1, strings.Count(res.output, `"msg":"stop sequence finished"`), res.output)
	require.Equal(t, 1, strings.Count(res.output, "waiting the drain delay"), res.output)
	require.Contains(t, res.output, `"drain_delay":0.1,"stages":["http api","grpc","http admin"]`, "one drain delay, the largest")
}

// Run's pod is ready only once every start hook ran, a user's after the
// servers' included.
func TestRunIsReadyOnlyAfterEveryStartHook(t *testing.T) {
	cmd, out := startScenario(t, "slow-start", "MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
		"MARTY_GRPC_ADDR=127.0.0.1:0", "MARTY_DB_DSN=:memory:")
	waitForLog(t, out, "scenario waiting")
	m := regexp.MustCompile(`"admin":"([^"]+)"`).FindStringSubmatch(out.String())
	require.NotNil(t, m, out.String())
	code, body := readyz(t, m[1])
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "starting")

	require.NoError(t, cmd.Process.Signal(syscall.SIGUSR1))
	waitForLog(t, out, "martyfx: started")
	require.Eventually(t, func() bool { code, _ := readyz(t, m[1]); return code == http.StatusOK }, 20*time.Second, 10*time.Millisecond,
		"ready once every start hook ran")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	res := wait(t, cmd, out)
	require.Equal(t, 0, res.code, res.output)
}

func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestRunExitsOneWhenStartFails(t *testing.T) {
	cmd, out := startScenario(t, "start-fails")
	res := wait(t, cmd, out)
	require.Equal(t, 1, res.code, res.output)
	require.Contains(t, res.output, "martyfx: start: database unreachable\n")
	require.Equal(t, 1, strings.Count(res.output, "database unreachable"), "reported once: %s", res.output)
}

func TestRunExitsWithTheShutdownerCode(t *testing.T) {
	cmd, out := startScenario(t, "shutdowner")
	res := wait(t, cmd, out)
	require.Equal(t, 3, res.code, res.output)
}

func TestRunExitsOneWhenStopOutlivesTheTimeout(t *testing.T) {
	cmd, out := startScenario(t, "stop-too-slow", "MARTY_STOP_TIMEOUT=200ms")
	waitForLog(t, out, "martyfx: started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	// The stop hook waits for its context to end: only the stop timeout
	// ends it, so the process exiting at all is the bound.
	res := wait(t, cmd, out)
	require.Equal(t, 1, res.code, res.output)
	require.Contains(t, res.output, "martyfx: stop:")
	require.Contains(t, res.output, "context deadline exceeded", "the stop timeout ended the stop")
}

func TestRunExitsOneOnBadConfig(t *testing.T) {
	cmd, out := startScenario(t, "bad-config", "MARTY_START_TIMEOUT=soon")
	res := wait(t, cmd, out)
	require.Equal(t, 1, res.code, res.output)
	require.Contains(t, res.output, `fxcore: invalid MARTY_START_TIMEOUT="soon": want a duration such as 500ms, 5s or 1m`)
}

// serverEnv keeps a scenario's servers on free ports and its database in memory.
var serverEnv = []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_GRPC_ADDR=127.0.0.1:0", "MARTY_DB_DSN=:memory:"}

func TestRunPrintsTheRootCauseFirstThenTheChainOnce(t *testing.T) {
	t.Parallel()
	res := scenario(t, "route-func", serverEnv...)
	require.Equal(t, 1, res.code, res.output)
	require.Equal(t, `martyfx: build app: fxhttp.AsRoute("GET /hello"): martyfx.hello: got func(http.ResponseWriter, *http.Request), `+
		"want an http.Handler, or a constructor that returns one (and optionally an error)\n", res.output,
		"the cause alone, when it is the whole error: no Fx chain, no logger failure")

	res = scenario(t, "route-wrong-type", serverEnv...)
	require.Equal(t, 1, res.code, res.output)
	lines := strings.Split(strings.TrimSpace(res.output), "\n")
	require.Len(t, lines, 2, res.output)
	require.Equal(t, `martyfx: build app: fxhttp.AsRoute("GET /hello"): martyfx.newNumber: constructor func() int: got int, want an http.Handler`, lines[0])
	require.LessOrEqual(t, len(lines[0]), 200)
	require.True(t, strings.HasPrefix(lines[1], "  the whole error: could not build arguments for function"), lines[1])
	require.Equal(t, 1, strings.Count(res.output, `could not build value group fxhttp.Route`), "the chain once")
}

func TestRunFailsOnABadLogLevelBeforeFx(t *testing.T) {
	t.Parallel()
	res := scenario(t, "bad-config", "MARTY_LOG_LEVEL=verbose")
	require.Equal(t, 1, res.code, res.output)
	require.Equal(t, `fxcore: invalid MARTY_LOG_LEVEL="verbose": want one of "debug", "info", "warn", "error"`+"\n", res.output,
		"its own error and nothing else (no Fx PROVIDE lines)")
}

func TestRunWarnsAboutAMisspeltVariableAndFailsInProduction(t *testing.T) {
	t.Parallel()
	cmd, out := startScenario(t, "signal", append([]string{"MARTY_HTTP_ADMIN_TOKN=s3cret"}, serverEnv...)...)
	waitForLog(t, out, "martyfx: started")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	res := wait(t, cmd, out)
	require.Equal(t, 0, res.code, res.output)
	require.Contains(t, res.output, `"msg":"no module reads this environment variable; is it misspelt?","service"`)
	require.Contains(t, res.output, `"variable":"MARTY_HTTP_ADMIN_TOKN","did_you_mean":"MARTY_HTTP_ADMIN_TOKEN"`)

	res = scenario(t, "signal", append([]string{"MARTY_HTTP_ADMIN_TOKN=s3cret", "MARTY_ENV=production"}, serverEnv...)...)
	require.Equal(t, 1, res.code, res.output)
	require.Contains(t, res.output, "martyfx: start: fxcore: no module reads MARTY_HTTP_ADMIN_TOKN (did you mean MARTY_HTTP_ADMIN_TOKEN?)")
	require.NotContains(t, res.output, "s3cret")
	require.NotContains(t, res.output, "listening", "it fails before any server listens")
}
