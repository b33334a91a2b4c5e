package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	"golang.org/x/mod/modfile"
)

// repoRoot is this martyfx checkout, for --replace.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	return root
}

// requireNothingWritten fails when dir exists.
func requireNothingWritten(t *testing.T, dir string) {
	t.Helper()
	_, err := os.Stat(dir)
	require.True(t, os.IsNotExist(err), "%s was created", dir)
}

func TestNewRefusesBadInput(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	notMartyfx := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(notMartyfx, "go.mod"), []byte("module example.com/other\n"), 0o644))
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"empty name", Options{Kind: "grpc"}, "a service name is required"},
		{"upper case", Options{Name: "Billing", Kind: "grpc"}, `invalid service name "Billing": want a lowercase DNS label`},
		{"leading digit", Options{Name: "1billing", Kind: "grpc"}, `invalid service name "1billing"`},
		{"underscore", Options{Name: "bill_ing", Kind: "grpc"}, `invalid service name "bill_ing"`},
		{"trailing hyphen", Options{Name: "billing-", Kind: "grpc"}, `invalid service name "billing-"`},
		{"double hyphen", Options{Name: "bill--ing", Kind: "grpc"}, `invalid service name "bill--ing"`},
		{"path", Options{Name: "../billing", Kind: "grpc"}, `invalid service name "../billing"`},
		{"too long", Options{Name: strings.Repeat("a", 64), Kind: "grpc"}, "at most 63 characters"},
		{"keyword", Options{Name: "func", Kind: "http"}, `its Go package name "func" is a Go keyword`},
		{"shadowing", Options{Name: "ht-tp", Kind: "http"}, `its Go package name "http"`},
		{"no kind", Options{Name: "billing"}, "--kind is required: one of grpc, http, hybrid"},
		{"bad kind", Options{Name: "billing", Kind: "rest"}, `invalid --kind "rest": want one of grpc, http, hybrid`},
		{"module without dot", Options{Name: "billing", Kind: "grpc", Module: "billing"}, `invalid --module "billing": malformed module path "billing": missing dot in first path element`},
		{"module with space", Options{Name: "billing", Kind: "grpc", Module: "example.com/bad path"}, `invalid --module "example.com/bad path"`},
		{"martyfx module", Options{Name: "billing", Kind: "grpc", Module: "github.com/martyfx/martyfx/billing"}, "must not be martyfx's own module path"},
		{"replace not a checkout", Options{Name: "billing", Kind: "grpc", Replace: t.TempDir()}, "want a martyfx checkout"},
		{"replace other module", Options{Name: "billing", Kind: "grpc", Replace: notMartyfx}, `declares module "example.com/other", want "github.com/martyfx/martyfx"`},
		{"bad version", Options{Name: "billing", Kind: "grpc", MartyfxVersion: "1.0"}, `invalid --martyfx-version "1.0"`},
		// A test binary is a development build: without its checkout it
		// cannot name a version.
		{"devel build without a checkout", Options{Name: "billing", Kind: "grpc", lookIn: []string{notMartyfx}},
			"is a development build (version " + buildVersion() + ") and no martyfx checkout was found at or above " + notMartyfx + ", so it cannot tell which martyfx to require: " +
				"run it from a clone of martyfx (`go run ./cmd/martyfx new billing --kind grpc --dir ../billing` in the clone), " +
				"or pass --replace /path/to/martyfx to use a local checkout, or --martyfx-version vX.Y.Z to require a published version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			tc.o.Dir = dir
			if tc.o.Replace == "" && tc.o.lookIn == nil && tc.name != "bad version" {
				tc.o.Replace = root
			}
			_, err := New(tc.o)
			require.ErrorContains(t, err, tc.want)
			require.True(t, strings.HasPrefix(err.Error(), "martyfx new: "), err.Error())
			require.NotContains(t, err.Error(), "@latest", "martyfx is not on the module proxy: @latest is no advice")
			requireNothingWritten(t, dir)
		})
	}
}

// TestDevelopmentBuildUsesItsCheckout: a development build (this test
// binary, as `go run ./cmd/martyfx` in a clone) without --replace or
// --martyfx-version replaces martyfx with the checkout it was built from,
// and says so; --martyfx-version still requires a published version.
func TestDevelopmentBuildUsesItsCheckout(t *testing.T) {
	t.Parallel()
	require.True(t, devBuild(buildVersion()), "a test binary is a development build (version %s)", buildVersion())
	var log bytes.Buffer
	res, err := New(Options{Name: "billing", Kind: "http", Dir: filepath.Join(t.TempDir(), "billing"), NoTidy: true, Log: &log})
	require.NoError(t, err)
	f := readGoMod(t, res.Dir)
	require.Len(t, f.Replace, 1)
	requireSameDir(t, repoRoot(t), f.Replace[0].New.Path)
	require.Equal(t, replacedVersion, f.Require[0].Mod.Version)
	require.Contains(t, log.String(), "martyfx new: development build: using the checkout at "+f.Replace[0].New.Path+
		" as github.com/martyfx/martyfx (replace directive); pass --martyfx-version to require a published version instead\n")
	require.NotContains(t, log.String(), "inside the martyfx checkout")
	readme, err := os.ReadFile(filepath.Join(res.Dir, "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(readme), "go mod vendor", "the README says how to build the image of a replaced martyfx")

	// The working directory is the fallback (a -trimpath build); a module
	// of its own nearer than the checkout stops the search.
	for _, dir := range []string{repoRoot(t), filepath.Join(repoRoot(t), "cmd", "martyfx", "templates")} {
		require.Equal(t, repoRoot(t), findCheckout([]string{t.TempDir(), dir}), dir)
	}
	other := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(other, "sub"), 0o755))
	require.Empty(t, findCheckout([]string{filepath.Join(other, "sub")}))

	// Writing into the checkout works, with a note (a stand-in checkout:
	// nothing is written into this one).
	log.Reset()
	fake := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(fake, "go.mod"), []byte("module "+martyfxModule+"\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(fake, "cmd"), 0o755))
	_, err = New(Options{Name: "billing", Kind: "http", Dir: filepath.Join(fake, "billing"), NoTidy: true, Log: &log, lookIn: []string{filepath.Join(fake, "cmd")}})
	require.NoError(t, err)
	require.Contains(t, log.String(), "using the checkout at "+fake+" as")
	require.Contains(t, log.String(), "martyfx new: note: "+filepath.Join(fake, "billing")+" is inside the martyfx checkout; --dir ../billing keeps the new service out of it\n")

	// --martyfx-version: no replace, no message.
	log.Reset()
	res, err = New(Options{Name: "billing", Kind: "http", Dir: filepath.Join(t.TempDir(), "pinned"), MartyfxVersion: "v0.3.1", NoTidy: true, Log: &log})
	require.NoError(t, err)
	f = readGoMod(t, res.Dir)
	require.Empty(t, f.Replace)
	require.Equal(t, "v0.3.1", f.Require[0].Mod.Version)
	require.NotContains(t, log.String(), "development build")
}

func readGoMod(t *testing.T, dir string) *modfile.File {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	f, err := modfile.Parse("go.mod", b, nil)
	require.NoError(t, err)
	return f
}

func TestNewRefusesOccupiedDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mine := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(mine, []byte("keep me"), 0o644))

	_, err := New(Options{Name: "billing", Kind: "http", Dir: dir, Replace: repoRoot(t), NoTidy: true})
	require.ErrorContains(t, err, "is not empty (1 entries); choose another --dir, or pass --force")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing written next to the existing file")

	// --force writes the project and leaves other files alone.
	res, err := New(Options{Name: "billing", Kind: "http", Dir: dir, Replace: repoRoot(t), NoTidy: true, Force: true})
	require.NoError(t, err)
	require.Contains(t, res.Files, "main.go")
	b, err := os.ReadFile(mine)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(b))

	// A file, not a directory, is refused too.
	_, err = New(Options{Name: "billing", Kind: "http", Dir: mine, Replace: repoRoot(t), NoTidy: true})
	require.ErrorContains(t, err, "output directory")
}

func TestGoMod(t *testing.T) {
	t.Parallel()
	// A checkout path with a space, which go.mod must quote.
	root := filepath.Join(t.TempDir(), "my checkout")
	require.NoError(t, os.Symlink(repoRoot(t), root))
	dir := t.TempDir()
	res, err := New(Options{Name: "billing", Kind: "http", Dir: filepath.Join(dir, "out"), Module: "github.com/acme/billing", Replace: root, NoTidy: true})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(res.Dir, "go.mod"))
	require.NoError(t, err)
	f, err := modfile.Parse("go.mod", b, nil)
	require.NoError(t, err)
	require.Equal(t, "github.com/acme/billing", f.Module.Mod.Path)
	require.Equal(t, goVersion, f.Go.Version)
	require.Len(t, f.Require, 1)
	require.Equal(t, martyfxModule, f.Require[0].Mod.Path)
	require.Len(t, f.Replace, 1)
	require.Equal(t, root, f.Replace[0].New.Path)

	// A pinned version without replace.
	res, err = New(Options{Name: "billing", Kind: "http", Dir: filepath.Join(dir, "pinned"), MartyfxVersion: "v0.3.1", NoTidy: true})
	require.NoError(t, err)
	b, err = os.ReadFile(filepath.Join(res.Dir, "go.mod"))
	require.NoError(t, err)
	f, err = modfile.Parse("go.mod", b, nil)
	require.NoError(t, err)
	require.Equal(t, "v0.3.1", f.Require[0].Mod.Version)
	require.Empty(t, f.Replace)
}

// TestRenderEveryCombination renders every kind with every flag set in
// memory: the Go files are valid (gofmt'ed), the file set follows the flags
// and the Kubernetes manifests are YAML with the right probes.
func TestRenderEveryCombination(t *testing.T) {
	t.Parallel()
	for _, kind := range Kinds {
		for _, db := range []bool{false, true} {
			for _, events := range []bool{false, true} {
				o := Options{Name: "order-history", Kind: kind, WithDB: db, WithEvents: events, Replace: repoRoot(t)}
				require.NoError(t, o.validate())
				d := o.data()
				files, err := render(d)
				require.NoError(t, err, "%s db=%v events=%v", kind, db, events)

				has := func(name string) bool { _, ok := files[name]; return ok }
				grpc, http := kind != "http", kind != "grpc"
				require.Equal(t, grpc, has("proto/order_history/v1/order_history.proto"))
				require.Equal(t, grpc, has("buf.gen.yaml"))
				require.Equal(t, grpc, has("internal/orderhistory/grpc.go"))
				require.Equal(t, http, has("internal/orderhistory/http.go"))
				require.Equal(t, db, has("internal/orderhistory/repository.go"))
				require.Equal(t, db, has("internal/orderhistory/migrations/postgres/00001_greetings.sql"))
				require.Equal(t, db, has("internal/orderhistory/migrations/sqlite/00001_greetings.sql"))
				require.Equal(t, events, has("internal/orderhistory/events.go"))
				for _, always := range []string{"main.go", "README.md", "Dockerfile", ".ci/run", ".gitignore",
					"deploy/k8s/deployment.yaml", "deploy/k8s/service.yaml",
					"internal/orderhistory/module.go", "internal/orderhistory/service.go",
					"internal/orderhistory/service_test.go", "internal/orderhistory/main_test.go", "internal/orderhistory/perf_test.go"} {
					require.True(t, has(always), always)
				}
				require.Contains(t, string(files["internal/orderhistory/module.go"]), "package orderhistory")
				require.Contains(t, string(files["README.md"]), "go run .        # run the service\ngo test ./...   # run its tests")
				requireReadmeCalls(t, files["README.md"], grpc, http)
				// Without the replace (a published martyfx): no vendoring.
				published := o
				published.Replace, published.MartyfxVersion = "", "v0.1.0"
				pfiles, err := render(published.data())
				require.NoError(t, err)
				requireReadmeCalls(t, pfiles["README.md"], grpc, http)
				require.NotContains(t, string(pfiles["README.md"]), "go mod vendor")
				require.NotContains(t, string(pfiles["Dockerfile"]), "vendor")
				require.Contains(t, string(files["Dockerfile"]), "go build -mod=vendor")

				var raw map[string]any
				require.NoError(t, yaml.Unmarshal(files["deploy/k8s/service.yaml"], &raw), string(files["deploy/k8s/service.yaml"]))
				probes := probesOf(t, files["deploy/k8s/deployment.yaml"])
				require.Equal(t, "/livez", probes["livenessProbe"]["httpGet"].(map[string]any)["path"])
				require.Equal(t, "/startupz", probes["startupProbe"]["httpGet"].(map[string]any)["path"])
				require.Equal(t, "admin", probes["startupProbe"]["httpGet"].(map[string]any)["port"])
				if grpc {
					require.Equal(t, 50051, probes["readinessProbe"]["grpc"].(map[string]any)["port"])
				} else {
					require.Equal(t, "/readyz", probes["readinessProbe"]["httpGet"].(map[string]any)["path"])
				}
				// The admin token comes from the optional Secret, never from the manifest.
				token := envOf(t, files["deploy/k8s/deployment.yaml"])["MARTY_HTTP_ADMIN_TOKEN"]
				require.NotNil(t, token, "MARTY_HTTP_ADMIN_TOKEN")
				require.NotContains(t, token, "value")
				ref := token["valueFrom"].(map[string]any)["secretKeyRef"].(map[string]any)
				require.Equal(t, map[string]any{"name": "order-history-admin", "key": "token", "optional": true}, ref)
				require.Contains(t, string(files["deploy/k8s/deployment.yaml"]), "kubectl create secret generic order-history-admin")
				require.Contains(t, string(files["README.md"]), "kubectl create secret generic order-history-admin")
			}
		}
	}
}

// envOf returns the env entries of the Deployment's only container by name.
func envOf(t *testing.T, manifest []byte) map[string]map[string]any {
	t.Helper()
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Env []map[string]any `yaml:"env"`
					} `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(manifest, &d))
	require.Len(t, d.Spec.Template.Spec.Containers, 1)
	out := map[string]map[string]any{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		name, _ := e["name"].(string)
		require.NotContains(t, out, name, "env %s set twice", name)
		out[name] = e
	}
	return out
}

// requireReadmeCalls checks, without running anything, that a README's
// commands parse, that each call of the service shows its output, and that
// each curl with a body says it is JSON (curl -d alone sends a form type,
// which the JSON handlers refuse with 415). TestGeneratedProjects runs them.
func requireReadmeCalls(t *testing.T, readme []byte, grpc, http bool) {
	t.Helper()
	cmds, err := readmeCommands(string(readme))
	require.NoError(t, err)
	var curls, grpcurls int
	for _, c := range cmds {
		switch {
		case c.Args[0] == "curl":
			curls++
			require.NotNil(t, c.Want, c.Line)
			if slices.Contains(c.Args, "-d") {
				require.Contains(t, c.Args, "Content-Type: application/json", c.Line)
			}
		case strings.Contains(c.Line, "grpcurl"):
			grpcurls++
			require.NotNil(t, c.Want, c.Line)
		}
	}
	require.Equal(t, http, curls > 0)
	require.Equal(t, grpc, grpcurls > 0)
}

// probesOf returns the probes of the Deployment's only container by name.
func probesOf(t *testing.T, manifest []byte) map[string]map[string]any {
	t.Helper()
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []map[string]any `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	require.NoError(t, yaml.Unmarshal(manifest, &d))
	out := map[string]map[string]any{}
	for _, name := range []string{"startupProbe", "livenessProbe", "readinessProbe"} {
		p, ok := d.Spec.Template.Spec.Containers[0][name].(map[string]any)
		require.True(t, ok, "%s missing", name)
		out[name] = p
	}
	return out
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	reset := func() { stdout.Reset(); stderr.Reset() }

	require.Equal(t, 0, run([]string{"version"}, &stdout, &stderr))
	require.Regexp(t, `^martyfx \S+`, stdout.String())
	require.Equal(t, buildVersion()+vcsSuffix(), strings.TrimSpace(strings.TrimPrefix(stdout.String(), "martyfx ")))

	reset()
	require.Equal(t, 0, run([]string{"new", "--help"}, &stdout, &stderr))
	for _, want := range []string{"grpc ", "http ", "hybrid ", "-kind", "-module", "-with-db", "-with-events", "-dir", "-force", "-replace", "-martyfx-version"} {
		require.Contains(t, stdout.String(), want)
	}

	reset()
	require.Equal(t, 0, run([]string{"help"}, &stdout, &stderr))
	require.Contains(t, stdout.String(), "martyfx new <name>")

	reset()
	require.Equal(t, 2, run(nil, &stdout, &stderr))
	require.Equal(t, 2, run([]string{"create"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), `unknown command "create"`)

	reset()
	require.Equal(t, 2, run([]string{"new", "a", "b", "--kind", "grpc"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "want exactly one service name, got 2")

	reset()
	require.Equal(t, 2, run([]string{"new", "a", "--colour", "red"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "flag provided but not defined: -colour")

	reset()
	dir := filepath.Join(t.TempDir(), "out")
	require.Equal(t, 1, run([]string{"new", "Billing", "--kind", "grpc", "--dir", dir}, &stdout, &stderr))
	require.Contains(t, stderr.String(), `invalid service name "Billing"`)
	requireNothingWritten(t, dir)

	// Flags on either side of the name.
	reset()
	require.Equal(t, 0, run([]string{"new", "--kind", "http", "billing", "--dir", dir, "--replace", repoRoot(t), "--no-tidy"}, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "go test ./...")
	require.FileExists(t, filepath.Join(dir, "internal", "billing", "http.go"))
	info, err := os.Stat(filepath.Join(dir, ".ci", "run"))
	require.NoError(t, err)
	require.NotZero(t, info.Mode()&0o100, ".ci/run is executable")
	if bash, err := exec.LookPath("bash"); err == nil {
		out, err := exec.Command(bash, "-n", filepath.Join(dir, ".ci", "run")).CombinedOutput()
		require.NoError(t, err, "bash -n .ci/run: %s", out)
	}
}
