package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"text/template"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

const (
	martyfxModule = "github.com/martyfx/martyfx"
	// goVersion is the go directive of generated modules: martyfx's own.
	goVersion = "1.26.0"
	// goToolchain is the toolchain line of generated modules: martyfx's own,
	// a Go release without known vulnerabilities.
	goToolchain = "go1.27.3"
	// replacedVersion is the conventional version required when a replace
	// directive supplies the module.
	replacedVersion = "v0.0.0-00010101000000-000000000000"
)

// Kinds are the service kinds `martyfx new` writes.
var Kinds = []string{"grpc", "http", "hybrid"}

// Options are the inputs of New.
type Options struct {
	Name           string    // service name, a lowercase DNS label
	Kind           string    // grpc, http or hybrid
	Module         string    // Go module path; default example.com/<Name>
	WithDB         bool      // model, repository, migrations
	WithEvents     bool      // event, publication, handler
	Dir            string    // output directory; default ./<Name>
	Force          bool      // write into a non-empty Dir
	MartyfxVersion string    // required martyfx version; default the build's
	Replace        string    // local martyfx checkout for a replace directive
	NoTidy         bool      // skip go mod tidy
	Log            io.Writer // progress messages; nil for none

	// lookIn are the directories where a development build looks for its
	// martyfx checkout (each and its parents); nil means checkoutSearch().
	lookIn []string
}

// Result says what New wrote.
type Result struct {
	Dir   string   // absolute output directory
	Files []string // slash-separated paths relative to Dir, sorted
}

//go:embed all:templates
var templates embed.FS

// data is what the templates see.
type data struct {
	Name         string // billing-api
	Module       string // example.com/billing-api
	Pkg          string // billingapi: the internal Go package
	Camel        string // BillingApi
	Snake        string // billing_api: proto package root, migration set
	ProtoPkg     string // billing_api.v1
	ProtoDir     string // billing_api/v1
	ProtoPath    string // billing_api/v1/billing_api.proto
	GoProtoPkg   string // billingapiv1
	ProtoService string // BillingApiService
	Kind         string
	GRPC, HTTP   bool
	DB, Events   bool
	Replace      bool
	Tools        tools
}

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)

// reserved are names whose Go package (hyphens removed) would be a Go keyword
// or would shadow an identifier the generated code uses.
var reserved = []string{
	// keywords
	"break", "case", "chan", "const", "continue", "default", "defer", "else", "fallthrough",
	"for", "func", "go", "goto", "if", "import", "interface", "map", "package", "range",
	"return", "select", "struct", "switch", "type", "var",
	// identifiers of the generated code
	"main", "context", "errors", "fmt", "fx", "zap", "http", "grpc", "status", "codes",
	"testing", "require", "martyfx", "fxtest", "fxrepo", "fxevents", "fxhttp", "fxgrpc",
	"gorm", "time", "strconv", "embed", "fs", "json", "net", "os", "io",
}

// validate checks o and fills its defaults; it touches nothing on disk.
func (o *Options) validate() error {
	if o.Name == "" {
		return errors.New("martyfx new: a service name is required, e.g. `martyfx new billing --kind grpc`")
	}
	if len(o.Name) > 63 || !nameRE.MatchString(o.Name) || strings.Contains(o.Name, "--") {
		return fmt.Errorf("martyfx new: invalid service name %q: want a lowercase DNS label: "+
			"letters a-z, digits and single hyphens, starting with a letter and ending with a letter or digit, at most 63 characters (e.g. \"billing\" or \"order-history\")", o.Name)
	}
	if pkg := strings.ReplaceAll(o.Name, "-", ""); slices.Contains(reserved, pkg) {
		return fmt.Errorf("martyfx new: invalid service name %q: its Go package name %q is a Go keyword or clashes with a package the generated code imports; pick another name", o.Name, pkg)
	}
	if o.Kind == "" {
		return fmt.Errorf("martyfx new: --kind is required: one of %s", strings.Join(Kinds, ", "))
	}
	if !slices.Contains(Kinds, o.Kind) {
		return fmt.Errorf("martyfx new: invalid --kind %q: want one of %s", o.Kind, strings.Join(Kinds, ", "))
	}
	if o.Module == "" {
		o.Module = "example.com/" + o.Name
	}
	if err := module.CheckPath(o.Module); err != nil {
		return fmt.Errorf("martyfx new: invalid --module %q: %w", o.Module, err)
	}
	if o.Module == martyfxModule || strings.HasPrefix(o.Module, martyfxModule+"/") {
		return fmt.Errorf("martyfx new: invalid --module %q: it must not be martyfx's own module path", o.Module)
	}
	if o.Dir == "" {
		o.Dir = o.Name
	}
	if o.Replace != "" {
		abs, err := filepath.Abs(o.Replace)
		if err != nil {
			return fmt.Errorf("martyfx new: --replace %q: %w", o.Replace, err)
		}
		gomod, err := os.ReadFile(filepath.Join(abs, "go.mod"))
		if err != nil {
			return fmt.Errorf("martyfx new: --replace %q: want a martyfx checkout: %w", o.Replace, err)
		}
		if p := modfile.ModulePath(gomod); p != martyfxModule {
			return fmt.Errorf("martyfx new: --replace %q: its go.mod declares module %q, want %q", o.Replace, p, martyfxModule)
		}
		o.Replace = abs
	}
	switch v := o.MartyfxVersion; {
	case v != "":
		if !semver.IsValid(v) {
			return fmt.Errorf("martyfx new: invalid --martyfx-version %q: want a semantic version like v0.1.0", v)
		}
	case o.Replace != "":
		o.MartyfxVersion = replacedVersion
	default:
		v := buildVersion()
		if !devBuild(v) {
			o.MartyfxVersion = v
			break
		}
		// "(devel)", or a version stamped from a local checkout (a
		// pseudo-version of a commit, maybe "+dirty"), names nothing a
		// module proxy is known to serve: use the checkout this binary was
		// built from, as `go run ./cmd/martyfx` in a clone means.
		lookIn := o.lookIn
		if lookIn == nil {
			lookIn = checkoutSearch()
		}
		root := findCheckout(lookIn)
		if root == "" {
			where := strings.Join(lookIn, " or ")
			if where == "" {
				where = "the build's source directory or the working directory"
			}
			return fmt.Errorf("martyfx new: this martyfx binary is a development build (version %s) and no martyfx checkout was found at or above %s, "+
				"so it cannot tell which martyfx to require: run it from a clone of martyfx (`go run ./cmd/martyfx new %s --kind %s --dir ../%s` in the clone), "+
				"or pass --replace /path/to/martyfx to use a local checkout, or --martyfx-version vX.Y.Z to require a published version",
				v, where, o.Name, o.Kind, o.Name)
		}
		o.Replace = root
		o.MartyfxVersion = replacedVersion
		logf(o.Log, "martyfx new: development build: using the checkout at %s as %s (replace directive); pass --martyfx-version to require a published version instead\n", root, martyfxModule)
	}
	return nil
}

func (o *Options) data() data {
	pkg := strings.ReplaceAll(o.Name, "-", "")
	snake := strings.ReplaceAll(o.Name, "-", "_")
	var camel strings.Builder
	for _, part := range strings.Split(o.Name, "-") {
		camel.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	svc := camel.String()
	if !strings.HasSuffix(svc, "Service") {
		svc += "Service"
	}
	return data{
		Name:         o.Name,
		Module:       o.Module,
		Pkg:          pkg,
		Camel:        camel.String(),
		Snake:        snake,
		ProtoPkg:     snake + ".v1",
		ProtoDir:     snake + "/v1",
		ProtoPath:    snake + "/v1/" + snake + ".proto",
		GoProtoPkg:   pkg + "v1",
		ProtoService: svc,
		Kind:         o.Kind,
		GRPC:         o.Kind != "http",
		HTTP:         o.Kind != "grpc",
		DB:           o.WithDB,
		Events:       o.WithEvents,
		Replace:      o.Replace != "",
		Tools:        pinned,
	}
}

// New validates o, renders every file in memory (compiling the proto and
// running the code generators for the gRPC kinds), and only then writes them
// into o.Dir; then it runs `go mod tidy` there unless o.NoTidy. A bad name,
// module path or flag, or a non-empty directory without Force, is an error
// before anything is written.
func New(o Options) (Result, error) {
	if err := o.validate(); err != nil {
		return Result{}, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("martyfx new: --dir %q: %w", o.Dir, err)
	}
	if err := checkDir(dir, o.Force); err != nil {
		return Result{}, err
	}
	if o.Replace != "" {
		if rel, err := filepath.Rel(o.Replace, dir); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			logf(o.Log, "martyfx new: note: %s is inside the martyfx checkout; --dir ../%s keeps the new service out of it\n", dir, o.Name)
		}
	}
	d := o.data()
	files, err := render(d)
	if err != nil {
		return Result{}, err
	}
	gomod, err := goMod(o)
	if err != nil {
		return Result{}, err
	}
	files["go.mod"] = gomod
	if d.GRPC {
		logf(o.Log, "generating Go code for proto/%s (protoc-gen-go %s, protoc-gen-go-grpc %s)\n", d.ProtoPath, pinned.ProtocGenGo, pinned.ProtocGenGoGRPC)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		gen, err := generateProto(ctx, d.ProtoPath, files["proto/"+d.ProtoPath])
		cancel()
		if err != nil {
			return Result{}, err
		}
		for name, content := range gen {
			files["gen/"+name] = content
		}
	}

	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return Result{}, fmt.Errorf("martyfx new: %w", err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(name, ".ci/") {
			mode = 0o755
		}
		if err := os.WriteFile(target, files[name], mode); err != nil {
			return Result{}, fmt.Errorf("martyfx new: %w", err)
		}
	}
	logf(o.Log, "wrote %s (%s, module %s)\n", dir, o.Kind, o.Module)
	res := Result{Dir: dir, Files: names}
	if !o.NoTidy {
		logf(o.Log, "running go mod tidy\n")
		if err := goCmd(context.Background(), dir, nil, "mod", "tidy"); err != nil {
			return res, fmt.Errorf("martyfx new: the files are written, but `go mod tidy` in %s failed (fix and re-run it there): %w", dir, err)
		}
	}
	return res, nil
}

// checkDir refuses a directory that exists and has entries, unless force.
func checkDir(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("martyfx new: output directory %s: %w", dir, err)
	case len(entries) > 0 && !force:
		return fmt.Errorf("martyfx new: output directory %s is not empty (%d entries); choose another --dir, or pass --force to write into it (generated files overwrite existing ones)", dir, len(entries))
	}
	return nil
}

// render executes every template for d. A template's path is its output path
// with .tmpl removed and __pkg__, __protodir__, __snake__ substituted; a file
// whose rendering is blank (its whole body under a false condition) is
// skipped. Go files are gofmt'ed, so a template that renders invalid Go is an
// error here.
func render(d data) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := fs.WalkDir(templates, "templates", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		src, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, "templates/"), ".tmpl")
		if !include(rel, d) {
			return nil
		}
		rel = strings.NewReplacer("__pkg__", d.Pkg, "__protodir__", d.ProtoDir, "__snake__", d.Snake).Replace(rel)
		t, err := template.New(rel).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return fmt.Errorf("martyfx new: template %s: %w", p, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, d); err != nil {
			return fmt.Errorf("martyfx new: template %s: %w", p, err)
		}
		b := buf.Bytes()
		if path.Ext(rel) == ".go" {
			if b, err = format.Source(b); err != nil {
				return fmt.Errorf("martyfx new: template %s renders invalid Go: %w\n%s", p, err, buf.Bytes())
			}
		}
		out[rel] = b
		return nil
	})
	return out, err
}

// include says whether the template at rel belongs to a project of d.
func include(rel string, d data) bool {
	base := path.Base(rel)
	switch {
	case strings.HasPrefix(rel, "proto/"), base == "buf.yaml", base == "buf.gen.yaml", base == "grpc.go":
		return d.GRPC
	case base == "http.go":
		return d.HTTP
	case base == "repository.go", strings.Contains(rel, "/migrations/"):
		return d.DB
	case base == "events.go":
		return d.Events
	}
	return true
}

// goMod writes go.mod with modfile, so paths are quoted as needed.
func goMod(o Options) ([]byte, error) {
	f := new(modfile.File)
	if err := f.AddModuleStmt(o.Module); err != nil {
		return nil, fmt.Errorf("martyfx new: go.mod: %w", err)
	}
	if err := f.AddGoStmt(goVersion); err != nil {
		return nil, fmt.Errorf("martyfx new: go.mod: %w", err)
	}
	if err := f.AddToolchainStmt(goToolchain); err != nil {
		return nil, fmt.Errorf("martyfx new: go.mod: %w", err)
	}
	if err := f.AddRequire(martyfxModule, o.MartyfxVersion); err != nil {
		return nil, fmt.Errorf("martyfx new: go.mod: %w", err)
	}
	if o.Replace != "" {
		if err := f.AddReplace(martyfxModule, "", o.Replace, ""); err != nil {
			return nil, fmt.Errorf("martyfx new: go.mod: %w", err)
		}
	}
	f.Cleanup()
	b, err := f.Format()
	if err != nil {
		return nil, fmt.Errorf("martyfx new: go.mod: %w", err)
	}
	return b, nil
}

// goCmd runs the go command in dir with stdin (may be nil) and returns an
// error carrying its output when it fails.
func goCmd(ctx context.Context, dir string, stdin []byte, args ...string) error {
	_, err := goOutput(ctx, dir, stdin, args...)
	return err
}

func goOutput(ctx context.Context, dir string, stdin []byte, args ...string) ([]byte, error) {
	return goOutputEnv(ctx, dir, stdin, nil, args...)
}

// goOutputEnv is goOutput with extra environment variables (later wins).
func goOutputEnv(ctx context.Context, dir string, stdin []byte, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format, args...)
	}
}
