package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/martyfx/martyfx/internal/nettest"
)

// grpcurlMu serializes the README's grpcurl runs across parallel projects.
var grpcurlMu sync.Mutex

// readmeRun is a generated project whose README runReadme runs.
type readmeRun struct {
	dir, name, kind   string
	db, events, image bool
	// checkout is go.mod's replace target; for image it is a symlink to this
	// checkout, removed while the image's build runs (the build context
	// cannot see the checkout).
	checkout string
}

// runReadme runs every command of the project's README, in order, as a user
// would from the project directory, with the default addresses
// (localhost:8080, :50051, :9090) swapped for free ports:
//
//   - export GOTOOLCHAIN=...: the toolchain go.mod names (the test's go commands use it);
//   - go run .: the service, until it is ready; SIGTERM stops it at the end,
//     and it must exit 0 after its graceful stop;
//   - go test ./...: uncached and verbose, with the expected tests passing;
//   - curl: the real curl (else emulateCurl): POST must answer 201 and GET
//     200, and the body must have the shape and values of the output the
//     README shows under the command (times only need to be times);
//   - go run .../grpcurl@v: the pinned grpcurl through the module proxy:
//     exit 0, output as the README shows;
//   - go mod vendor, docker build, rm -rf vendor: for image, the Go parts of
//     the image build: vendoring (with the checkout present), then the
//     Dockerfile's own build RUN line with the checkout hidden, then the
//     removal; docker itself is not run (no engine here);
//   - kubectl apply: not run (no cluster; TestRenderEveryCombination parses
//     the manifests).
//
// Any other command fails the test, so a README line no test runs cannot
// slip in. For the hybrid kind it also requires that HTTP and gRPC show a
// greeting the same way.
func runReadme(t *testing.T, r readmeRun) {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(r.dir, "README.md"))
	require.NoError(t, err)
	cmds, err := readmeCommands(string(readme))
	require.NoError(t, err)

	httpAddr, adminAddr, grpcAddr := nettest.FreeAddr(t), nettest.FreeAddr(t), nettest.FreeAddr(t)
	ports := strings.NewReplacer("localhost:8080", httpAddr, "localhost:50051", grpcAddr, "localhost:9090", adminAddr)
	var (
		svc     *service
		ran     = map[string]int{}
		outputs = map[string]any{} // by README line
	)
	start := time.Now()
	for _, c := range cmds {
		t.Logf("README (at %s): %s", time.Since(start).Round(100*time.Millisecond), c.Line)
		args := slices.Clone(c.Args)
		for i := range args {
			args[i] = ports.Replace(args[i])
		}
		switch {
		case args[0] == "export":
			require.Equal(t, []string{"export", "GOTOOLCHAIN=" + goToolchain}, args)
			ran["export"]++

		case slices.Equal(args, []string{"go", "run", "."}):
			require.Nil(t, svc, "go run . twice")
			svc = startService(t, r.dir, httpAddr, adminAddr, grpcAddr, r.kind != "http")
			ran["go run"]++

		case slices.Equal(args, []string{"go", "test", "./..."}):
			out := goIn(t, r.dir, "test", "-count=1", "-v", "./...")
			requireGeneratedTestsPassed(t, out, r)
			ran["go test"]++

		case args[0] == "MARTY_TEST_PERF=1":
			require.Equal(t, []string{"MARTY_TEST_PERF=1", "go", "test", "-run", "Perf", "-v", "./..."}, args)
			// Report-only: a speed never fails this test (a busy machine).
			out := goInEnv(t, r.dir, []string{"MARTY_TEST_PERF=1", "MARTY_TEST_PERF_REPORT_ONLY=1"}, "test", "-count=1", "-run", "Perf", "-v", "./...")
			require.Contains(t, out, "--- PASS: TestPerfGreet")
			require.Contains(t, out, "load: open loop at 100/s (at most 1000 in flight), for 3s, warm-up 1s")
			require.NotContains(t, out, "--- PASS: TestProbes", "-run Perf runs the performance tests only")
			ran["go test perf"]++

		case args[0] == "curl":
			require.NotNil(t, svc, "%s: the README calls the service before `go run .`", c.Line)
			status, body := runCurl(t, args[1:])
			want := http.StatusOK
			if slices.Contains(args, "-d") {
				want = http.StatusCreated
			}
			require.Equal(t, want, status, "%s\n%s", c.Line, body)
			outputs[c.Line] = requireOutput(t, c, body)
			ran["curl"]++

		case len(args) > 2 && args[0] == "go" && args[1] == "run" && strings.HasPrefix(args[2], "github.com/fullstorydev/grpcurl/cmd/grpcurl@"):
			require.NotNil(t, svc, "%s: the README calls the service before `go run .`", c.Line)
			require.Equal(t, "github.com/fullstorydev/grpcurl/cmd/grpcurl@"+pinned.Grpcurl, args[2])
			out := func() []byte {
				grpcurlMu.Lock() // parallel projects: build grpcurl once when the cache is cold
				defer grpcurlMu.Unlock()
				return goUser(t, r.dir, args[1:]...)
			}()
			outputs[c.Line] = requireOutput(t, c, out)
			ran["grpcurl"]++

		case slices.Equal(args, []string{"go", "mod", "vendor"}):
			ran["go mod vendor"]++
			if !r.image {
				continue
			}
			// Before vendoring, the Dockerfile's guard stops the build with the fix.
			guard := exec.Command("sh", "-c", dockerfileRun(t, r.dir, "vendor/modules.txt"))
			guard.Dir = r.dir
			out, err := guard.CombinedOutput()
			require.Error(t, err, "the Dockerfile's guard passes without vendor/")
			require.Contains(t, string(out), `run "go mod vendor" before docker build`)
			goUser(t, r.dir, "mod", "vendor")
			guard = exec.Command("sh", "-c", guard.Args[2])
			guard.Dir = r.dir
			out, err = guard.CombinedOutput()
			require.NoError(t, err, "%s", out)

		case len(args) > 1 && args[0] == "docker" && args[1] == "build":
			require.Equal(t, []string{"docker", "build", "-t", r.name, "."}, args)
			ran["docker build"]++
			if r.image {
				buildImageBinary(t, r)
			}

		case slices.Equal(args, []string{"rm", "-rf", "vendor"}):
			ran["rm vendor"]++
			if r.image {
				require.DirExists(t, filepath.Join(r.dir, "vendor"))
				require.NoError(t, os.RemoveAll(filepath.Join(r.dir, "vendor")))
			}

		case slices.Equal(args, []string{"kubectl", "apply", "-f", "deploy/k8s/"}):
			ran["kubectl"]++ // no cluster here
		case slices.Equal(args, []string{"kubectl", "create", "secret", "generic", r.name + "-admin", "--from-file=token=admin-token.txt"}):
			ran["kubectl secret"]++ // no cluster here

		default:
			t.Fatalf("README command %q: runReadme does not know how to run it; teach it", c.Line)
		}
	}

	grpcKind, httpKind := r.kind != "http", r.kind != "grpc"
	calls := 1
	if r.db {
		calls = 2 // create, then read back
	}
	want := map[string]int{"export": 1, "go run": 1, "go test": 1, "go test perf": 1, "go mod vendor": 1, "docker build": 1, "rm vendor": 1, "kubectl": 1, "kubectl secret": 1}
	if httpKind {
		want["curl"] = calls
	}
	if grpcKind {
		want["grpcurl"] = calls
	}
	require.Equal(t, want, ran, "the README's commands")

	if httpKind && grpcKind {
		requireOneShape(t, r, outputs)
	}
	svc.stop(t)
}

// requireOutput decodes a command's JSON output and requires the shape the
// README shows under it; every call in a README shows its output.
func requireOutput(t *testing.T, c readmeCommand, out []byte) any {
	t.Helper()
	got, err := decodeJSON(out)
	require.NoError(t, err, "%s: output is not JSON:\n%s", c.Line, out)
	require.NotNil(t, c.Want, "%s: the README shows no output for it", c.Line)
	requireShape(t, c.Want, got, c.Line)
	return got
}

// requireOneShape requires that the hybrid's README calls show a greeting the
// same way over HTTP and gRPC: the same fields and JSON types for the
// greetings created each way, and, with a database, the very same JSON for
// greeting 1 read each way.
func requireOneShape(t *testing.T, r readmeRun, outputs map[string]any) {
	t.Helper()
	var viaHTTP, viaGRPC []map[string]any
	for line, out := range outputs {
		m, ok := out.(map[string]any)
		require.True(t, ok, line)
		if strings.HasPrefix(line, "curl ") {
			viaHTTP = append(viaHTTP, m)
			continue
		}
		g, ok := m["greeting"].(map[string]any)
		require.True(t, ok, "%s: want {\"greeting\": {...}}", line)
		viaGRPC = append(viaGRPC, g)
	}
	require.NotEmpty(t, viaHTTP)
	require.NotEmpty(t, viaGRPC)
	types := func(m map[string]any) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = fmt.Sprintf("%T", v)
		}
		return out
	}
	for _, h := range viaHTTP {
		for _, g := range viaGRPC {
			require.Equal(t, types(g), types(h), "field names and JSON types over HTTP and gRPC")
		}
	}
	if r.db {
		var http1, grpc1 []any
		for line, out := range outputs {
			switch {
			case strings.HasSuffix(line, "/v1/greetings/1"):
				http1 = append(http1, out)
			case strings.HasSuffix(line, "/GetGreeting") && strings.Contains(line, `'{"id":"1"}'`):
				grpc1 = append(grpc1, out.(map[string]any)["greeting"])
			}
		}
		require.Len(t, http1, 1)
		require.Len(t, grpc1, 1)
		require.Equal(t, grpc1[0], http1[0], "greeting 1 over HTTP and gRPC")
	}
}

// requireGeneratedTestsPassed checks `go test -v ./...` ran the project's
// tests and the expected ones passed.
func requireGeneratedTestsPassed(t *testing.T, out string, r readmeRun) {
	t.Helper()
	require.Contains(t, out, "ok  \tgithub.com/acme/"+r.name+"/internal/"+strings.ReplaceAll(r.name, "-", ""))
	require.Contains(t, out, "--- PASS: TestProbes")
	if r.kind != "http" {
		require.Contains(t, out, "--- PASS: TestGreetGRPC")
	}
	if r.kind != "grpc" {
		require.Contains(t, out, "--- PASS: TestGreetHTTP")
	}
	if r.kind == "hybrid" {
		require.Contains(t, out, "--- PASS: TestOneShape")
	}
	if r.events {
		require.Contains(t, out, "--- PASS: TestGreetPublishesGreeted")
	}
	require.Contains(t, out, "--- SKIP: TestPerfGreet", "a performance test runs only with MARTY_TEST_PERF=1")
}

// goUser runs the go command in dir as a user's shell would (no -mod in
// GOFLAGS: `go run pkg@version` refuses it) and returns its standard output.
func goUser(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(generatedEnv(), "GOFLAGS=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "go %s in %s:\n%s%s", strings.Join(args, " "), dir, out, stderr.String())
	return out
}

// dockerfileRun returns the shell command of the Dockerfile's RUN
// instruction that mentions what (continuation lines joined).
func dockerfileRun(t *testing.T, dir, what string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
	require.NoError(t, err)
	var found []string
	for _, ins := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if cmd, ok := strings.CutPrefix(ins, "RUN "); ok && strings.Contains(cmd, what) {
			found = append(found, cmd)
		}
	}
	require.Len(t, found, 1, "RUN lines with %q in the Dockerfile", what)
	return found[0]
}

// buildImageBinary runs the Go build of the Dockerfile's build stage, its
// own RUN line (cache mounts dropped, -o into a temporary directory), in the
// project directory with the martyfx checkout hidden, as it is from a build
// context: vendor/ must be all it needs.
func buildImageBinary(t *testing.T, r readmeRun) {
	t.Helper()
	info, err := os.Lstat(r.checkout)
	require.NoError(t, err)
	require.NotZero(t, info.Mode()&os.ModeSymlink, "only a symlink to the checkout is removed")
	target, err := os.Readlink(r.checkout)
	require.NoError(t, err)
	require.NoError(t, os.Remove(r.checkout))
	defer func() { require.NoError(t, os.Symlink(target, r.checkout)) }()

	words, rest, err := shellFields(dockerfileRun(t, r.dir, "go build"))
	require.NoError(t, err)
	require.Empty(t, rest)
	var env, args []string
	for _, w := range words {
		switch {
		case strings.HasPrefix(w, "--mount="):
		case args == nil && strings.Contains(w, "="):
			env = append(env, w)
		default:
			args = append(args, w)
		}
	}
	require.Equal(t, "go", args[0], "%q", words)
	require.Contains(t, args, "-mod=vendor")
	out := filepath.Join(t.TempDir(), r.name)
	i := slices.Index(args, "-o")
	require.Positive(t, i)
	args[i+1] = out

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args[1:]...)
	cmd.Dir = r.dir
	cmd.Env = append(append(generatedEnv(), "GOFLAGS="), env...)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s (without the checkout at %s):\n%s", strings.Join(words, " "), r.checkout, b)
	require.FileExists(t, out)
}

// service is a generated project run with the README's `go run .`.
type service struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan error
}

// startService runs `go run .` in dir on the given addresses (and a SQLite
// file in a temporary directory) and waits until /readyz answers 200 and,
// for a project with a gRPC service, gRPC health says SERVING; without one
// nothing listens on the gRPC address.
func startService(t *testing.T, dir, httpAddr, adminAddr, grpcAddr string, withGRPC bool) *service {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(generatedEnv(),
		"MARTY_HTTP_ADDR="+httpAddr, "MARTY_HTTP_ADMIN_ADDR="+adminAddr, "MARTY_GRPC_ADDR="+grpcAddr,
		"MARTY_DB_DSN=file:"+filepath.Join(t.TempDir(), "run.db"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group (go run and the service) if the test fails midway.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	s := &service{cmd: cmd, out: &syncBuffer{}, exited: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	require.NoError(t, cmd.Start())
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case err := <-s.exited:
			s.exited <- err
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Logf("service killed at cleanup: %v", <-s.exited)
		}
	})

	client := &http.Client{Timeout: 2 * time.Second}
	ready := func() bool {
		select {
		case err := <-s.exited:
			s.exited <- err
			t.Fatalf("go run . exited before it was ready: %v\n%s", err, s.out.String())
		default:
		}
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	require.Eventually(t, ready, 4*time.Minute, 200*time.Millisecond, "never ready:\n%s", s.out.String())

	if !withGRPC {
		c, err := net.DialTimeout("tcp", grpcAddr, 2*time.Second)
		if err == nil {
			_ = c.Close()
		}
		require.Error(t, err, "an HTTP-only service opens no gRPC port")
		return s
	}
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
	health, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{})
	hcancel()
	require.NoError(t, conn.Close())
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())
	return s
}

// stop sends SIGTERM to the service (as Kubernetes stops a pod) and requires
// a clean exit; go run exits with the service's status. (A Ctrl-C to the
// whole group would make go run itself exit 1 whatever the service does.)
func (s *service) stop(t *testing.T) {
	t.Helper()
	svc := childOf(t, s.cmd.Process.Pid)
	require.NoError(t, syscall.Kill(svc, syscall.SIGTERM))
	select {
	case err := <-s.exited:
		s.exited <- err
		require.NoError(t, err, "go run . did not exit cleanly:\n%s", s.out.String())
	case <-time.After(time.Minute):
		t.Fatalf("go run . still running a minute after SIGTERM:\n%s", s.out.String())
	}
	require.Contains(t, s.out.String(), "martyfx: stopping")
	require.Contains(t, s.out.String(), `"signal": "terminated", "exit_code": 0`)
}
