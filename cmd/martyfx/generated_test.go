package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGeneratedProjects is the end-to-end check of the templates: it
// scaffolds each kind, and each flag at least once, into a temporary
// directory with go.mod replaced to this checkout (the scaffold runs go mod
// tidy), then runs `go vet ./...` and the README's `go test ./...` in it; one
// project also runs the README's `go run .` and is probed over HTTP and gRPC
// before a SIGTERM stops it cleanly. It builds whole services, so -short skips
// it. The generated tests run without -race (the compile would dominate) and
// share the go command's build cache.
func TestGeneratedProjects(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests generated projects (minutes); skipped with -short")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command in PATH")
	}
	for _, tc := range []struct {
		name       string
		kind       string
		db, events bool
		run        bool // also `go run .` it
	}{
		{name: "ledger", kind: "grpc", db: true, events: true},
		{name: "web-front", kind: "http"},
		{name: "order-history", kind: "hybrid", db: true, run: true},
		{name: "pricing", kind: "grpc"},
		{name: "mailer", kind: "http", events: true},
	} {
		t.Run(fmt.Sprintf("%s_%s_db=%v_events=%v", tc.name, tc.kind, tc.db, tc.events), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), tc.name)
			var log bytes.Buffer
			res, err := New(Options{Name: tc.name, Kind: tc.kind, WithDB: tc.db, WithEvents: tc.events,
				Module: "github.com/acme/" + tc.name, Dir: dir, Replace: repoRoot(t), Log: &log})
			require.NoError(t, err, log.String())
			require.FileExists(t, filepath.Join(dir, "go.sum"), "go mod tidy ran")

			readme, err := os.ReadFile(filepath.Join(res.Dir, "README.md"))
			require.NoError(t, err)
			for _, cmd := range []string{"go run .", "go test ./..."} {
				require.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(cmd)+`\s+#`), string(readme))
			}

			goIn(t, res.Dir, "vet", "./...")
			// The README's `go test ./...`, uncached and verbose.
			out := goIn(t, res.Dir, "test", "-count=1", "-v", "./...")
			require.Contains(t, out, "ok  \tgithub.com/acme/"+tc.name+"/internal/"+strings.ReplaceAll(tc.name, "-", ""))
			require.Contains(t, out, "--- PASS: TestProbes")
			if tc.kind != "http" {
				require.Contains(t, out, "--- PASS: TestGreetGRPC")
			}
			if tc.kind != "grpc" {
				require.Contains(t, out, "--- PASS: TestGreetHTTP")
			}
			if tc.events {
				require.Contains(t, out, "--- PASS: TestGreetPublishesGreeted")
			}
			if tc.run && runtime.GOOS == "linux" { // childOf reads /proc
				goRun(t, res.Dir)
			}
		})
	}
}

// goIn runs the go command in dir and returns its output, failing the test
// with it when the command fails.
func goIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = generatedEnv()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s in %s:\n%s", strings.Join(args, " "), dir, out)
	return string(out)
}

// generatedEnv is the environment of the go commands run in a generated
// project: no workspace, module downloads allowed, and no MARTY_* or OTEL_*
// variables of this process.
func generatedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MARTY_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "GOFLAGS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOWORK=off", "GOFLAGS=-mod=mod")
}

// goRun runs the README's `go run .` on free ports, waits for readiness,
// calls the service over HTTP and gRPC, then stops it with SIGTERM and
// requires a clean exit.
func goRun(t *testing.T, dir string) {
	t.Helper()
	httpAddr, adminAddr, grpcAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", ".")
	cmd.Dir = dir
	cmd.Env = append(generatedEnv(),
		"MARTY_HTTP_ADDR="+httpAddr, "MARTY_HTTP_ADMIN_ADDR="+adminAddr, "MARTY_GRPC_ADDR="+grpcAddr,
		"MARTY_DB_DSN=file:"+filepath.Join(t.TempDir(), "run.db"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Kill the whole group (go run and the service) if the test fails midway.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	client := &http.Client{Timeout: 2 * time.Second}
	ready := func() bool {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("go run . exited before it was ready: %v\n%s", err, out.String())
		default:
		}
		resp, err := client.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	require.Eventually(t, ready, 4*time.Minute, 200*time.Millisecond, "never ready:\n%s", out.String())

	resp, err := client.Post("http://"+httpAddr+"/v1/greetings", "application/json", strings.NewReader(`{"name":"Ada"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp, err = client.Get("http://" + httpAddr + "/v1/greetings/1")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	hctx, hcancel := context.WithTimeout(ctx, 5*time.Second)
	health, err := healthpb.NewHealthClient(conn).Check(hctx, &healthpb.HealthCheckRequest{})
	hcancel()
	require.NoError(t, conn.Close())
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

	// SIGTERM to the service (as Kubernetes stops a pod); go run exits with
	// the service's status. (A Ctrl-C to the whole group would make go run
	// itself exit 1 whatever the service does.)
	service := childOf(t, cmd.Process.Pid)
	require.NoError(t, syscall.Kill(service, syscall.SIGTERM))
	select {
	case err := <-exited:
		exited <- err
		require.NoError(t, err, "go run . did not exit cleanly:\n%s", out.String())
	case <-time.After(time.Minute):
		t.Fatalf("go run . still running a minute after SIGINT:\n%s", out.String())
	}
	require.Contains(t, out.String(), "martyfx: stopping")
	require.Contains(t, out.String(), `"signal": "terminated", "exit_code": 0`)
}

// childOf returns the pid of the only child process of pid (Linux /proc).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	require.NoError(t, err)
	var children []int
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, field := range strings.Fields(string(b)) {
			var child int
			_, err := fmt.Sscan(field, &child)
			require.NoError(t, err)
			children = append(children, child)
		}
	}
	require.Len(t, children, 1, "children of go run (pid %d)", pid)
	return children[0]
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}
