package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/mod/modfile"
)

// TestGeneratedProjects is the end-to-end check of the templates: it
// scaffolds each kind with and without a database, and events at least once,
// into a temporary directory with go.mod replaced to this checkout (the
// scaffold runs go mod tidy), runs `go vet ./...`, then runs every command of
// the generated README as written (runReadme): `go run .` on free ports, the
// README's `go test ./...`, each curl and grpcurl line against the running
// service with its status and body checked against the output the README
// shows, and, for one project, the image build's Go steps; a SIGTERM then
// stops the service cleanly. One project is written the way the README of
// cmd/martyfx says to from a clone, `go run ./cmd/martyfx new ...` without
// --replace. It builds whole services, so -short skips it. The generated
// tests run without -race (the compile would dominate) and share the go
// command's build cache; the projects run in parallel (-parallel).
func TestGeneratedProjects(t *testing.T) {
	t.Parallel()
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
		viaCLI     bool // written by cmd/martyfx/README.md's `go run ./cmd/martyfx new` in this checkout
		image      bool // run the README's image build steps (vendoring)
	}{
		{name: "billing", kind: "grpc", db: true, events: true, viaCLI: true},
		{name: "pricing", kind: "grpc"},
		{name: "web-front", kind: "http", db: true},
		{name: "mailer", kind: "http", events: true, image: true},
		{name: "order-history", kind: "hybrid", db: true},
		{name: "reviews", kind: "hybrid", events: true},
	} {
		t.Run(fmt.Sprintf("%s_%s_db=%v_events=%v", tc.name, tc.kind, tc.db, tc.events), func(t *testing.T) {
			// Two at a time (GOMAXPROCS on a 2-core machine): one builds
			// while the other waits on its service.
			t.Parallel()
			dir := filepath.Join(t.TempDir(), tc.name)
			module := "github.com/acme/" + tc.name
			var checkout string // the replace target, a symlink to this checkout the image step hides
			if tc.viaCLI {
				args := readmeNewCommand(t)
				for _, want := range [][]string{{"new", tc.name}, {"--kind", tc.kind}, {"--module", module}, {"--dir", "../" + tc.name}} {
					require.NotEqual(t, -1, indexPair(args, want), "README: %q has %q", args, want)
				}
				require.Equal(t, tc.db, slices.Contains(args, "--with-db"), "%q", args)
				require.Equal(t, tc.events, slices.Contains(args, "--with-events"), "%q", args)
				args[indexPair(args, []string{"--dir", "../" + tc.name})+1] = dir // not next to this checkout
				out := goCLI(t, repoRoot(t), args...)
				m := regexp.MustCompile(`(?m)^martyfx new: development build: using the checkout at (.+) as github\.com/martyfx/martyfx \(replace directive\); pass --martyfx-version to require a published version instead$`).FindStringSubmatch(out)
				require.NotNil(t, m, "the development build says which checkout it uses:\n%s", out)
				checkout = m[1]
				requireSameDir(t, repoRoot(t), checkout)
			} else {
				checkout = filepath.Join(t.TempDir(), "martyfx")
				require.NoError(t, os.Symlink(repoRoot(t), checkout))
				var log bytes.Buffer
				_, err := New(Options{Name: tc.name, Kind: tc.kind, WithDB: tc.db, WithEvents: tc.events,
					Module: module, Dir: dir, Replace: checkout, Log: &log})
				require.NoError(t, err, log.String())
			}
			require.FileExists(t, filepath.Join(dir, "go.sum"), "go mod tidy ran")
			gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
			require.NoError(t, err)
			mf, err := modfile.Parse("go.mod", gomod, nil)
			require.NoError(t, err)
			require.Len(t, mf.Replace, 1)
			require.Equal(t, checkout, mf.Replace[0].New.Path)

			goIn(t, dir, "vet", "./...")
			if runtime.GOOS != "linux" { // stopping `go run .` reads /proc
				goIn(t, dir, "test", "-count=1", "./...")
				t.Skip("the README's commands run on Linux only")
			}
			runReadme(t, readmeRun{dir: dir, name: tc.name, kind: tc.kind, db: tc.db, events: tc.events,
				image: tc.image, checkout: checkout})
		})
	}
}

// readmeNewCommand returns the arguments of the `go run ./cmd/martyfx new`
// command cmd/martyfx/README.md gives (after `go run ./cmd/martyfx`); the
// root README, a front page, points to it with the same words.
func readmeNewCommand(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	require.NoError(t, err)
	cmds, err := readmeCommands(string(b))
	require.NoError(t, err)
	var found [][]string
	for _, c := range cmds {
		if len(c.Args) > 3 && slices.Equal(c.Args[:4], []string{"go", "run", "./cmd/martyfx", "new"}) {
			found = append(found, c.Args[3:])
		}
	}
	require.Len(t, found, 1, "one `go run ./cmd/martyfx new` command in cmd/martyfx/README.md")
	root, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(root), "go run ./cmd/martyfx new", "the root README says how to run the CLI from a clone")
	return found[0]
}

// indexPair returns the index of the adjacent pair in args, or -1.
func indexPair(args, pair []string) int {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == pair[0] && args[i+1] == pair[1] {
			return i
		}
	}
	return -1
}

// goCLI runs this checkout's martyfx command as its README says, `go run
// ./cmd/martyfx args...` in root (with the go command's default -mod, so
// the checkout's go.mod stays as it is), and returns its output.
func goCLI(t *testing.T, root string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"run", "./cmd/martyfx"}, args...)...)
	cmd.Dir = root
	cmd.Env = append(generatedEnv(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go run ./cmd/martyfx %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// requireSameDir fails unless a and b name the same directory.
func requireSameDir(t *testing.T, a, b string) {
	t.Helper()
	ra, err := filepath.EvalSymlinks(a)
	require.NoError(t, err)
	rb, err := filepath.EvalSymlinks(b)
	require.NoError(t, err)
	require.Equal(t, ra, rb)
}

// goIn runs the go command in dir and returns its output, failing the test
// with it when the command fails.
func goIn(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return goInEnv(t, dir, nil, args...)
}

// goInEnv is goIn with env added to the generated project's environment.
func goInEnv(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(generatedEnv(), env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go %s in %s:\n%s", strings.Join(args, " "), dir, out)
	return string(out)
}

// generatedEnv is the environment of the go commands run in a generated
// project: no workspace, module downloads allowed, the toolchain its README
// exports, and no MARTY_* or OTEL_* variables of this process.
func generatedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MARTY_") || strings.HasPrefix(kv, "OTEL_") || strings.HasPrefix(kv, "GOFLAGS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN="+goToolchain)
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
