package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `martyfx scaffolds martyfx services.

Usage:
  martyfx new <name> --kind grpc|http|hybrid [flags]   write a new service
  martyfx version                                      print this build's version
  martyfx help                                         this text

Run "martyfx new --help" for the kinds and flags.
`

// run is the whole command: it returns the process exit code (0 ok, 1 failed,
// 2 bad usage).
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "new":
		return runNew(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "martyfx", buildVersion()+vcsSuffix())
		return 0
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "martyfx: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

const newUsage = `Usage: martyfx new <name> --kind grpc|http|hybrid [flags]

Writes a new martyfx service named <name> (a lowercase DNS label: letters,
digits and hyphens, starting with a letter, at most 63 characters) into
./<name> (or --dir).

Kinds:
  grpc     a gRPC service: proto + buf config + generated code, fxgrpc.AsService
  http     an HTTP/JSON service: fxhttp.AsRoute handlers
  hybrid   both: the gRPC service and HTTP/JSON routes over the same logic

Examples:
  martyfx new billing --kind grpc --with-db --with-events --module github.com/acme/billing
  martyfx new web-front --kind http --dir ./services/web-front

  # in a clone of martyfx (a development build uses that clone):
  go run ./cmd/martyfx new billing --kind grpc --dir ../billing

Flags:
`

func runNew(args []string, stdout, stderr io.Writer) int {
	var o Options
	fs := flag.NewFlagSet("martyfx new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.Kind, "kind", "", "service kind: grpc, http or hybrid (required)")
	fs.StringVar(&o.Module, "module", "", "Go module path (default example.com/<name>)")
	fs.BoolVar(&o.WithDB, "with-db", false, "add a model, a repository and SQL migrations (fxrepo)")
	fs.BoolVar(&o.WithEvents, "with-events", false, "add a domain event, its publication and a handler (fxevents)")
	fs.StringVar(&o.Dir, "dir", "", "output directory (default ./<name>)")
	fs.BoolVar(&o.Force, "force", false, "write into a non-empty directory, overwriting the files it generates")
	fs.StringVar(&o.MartyfxVersion, "martyfx-version", "", "published martyfx version to require (default: this binary's version; a development build\nuses the checkout it was built from instead, as with --replace)")
	fs.StringVar(&o.Replace, "replace", "", "path of a local martyfx checkout: adds a replace directive to go.mod (default for a\ndevelopment build, e.g. go run ./cmd/martyfx in a clone: that clone)")
	fs.BoolVar(&o.NoTidy, "no-tidy", false, "skip running go mod tidy in the new project")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), newUsage)
		fs.PrintDefaults()
		fmt.Fprintln(fs.Output(), "\nThe proto code of the grpc and hybrid kinds is generated at scaffold time with\nthe pinned protoc-gen-go and protoc-gen-go-grpc (go run module@version), and\nthe new project's `go mod tidy` needs the Go module proxy (or a warm module cache).")
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0
		}
	}
	// flag stops at the first positional argument; accept flags on either
	// side of the name.
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "martyfx new: want exactly one service name, got %d (%s)\n\n", len(pos), strings.Join(pos, " "))
		fs.Usage()
		return 2
	}
	o.Name = pos[0]
	o.Log = stdout
	res, err := New(o)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %d files to %s\n\nNext:\n  cd %s\n  go run .        # run the service\n  go test ./...   # run its tests\n", len(res.Files), res.Dir, res.Dir)
	return 0
}

// buildVersion is the martyfx module version this binary was built from
// ("(devel)" for a build inside a checkout).
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	if bi.Main.Path == martyfxModule {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == martyfxModule {
			return d.Version
		}
	}
	return "(unknown)"
}

// vcsSuffix is " (<revision>[, modified])" for a development build made in
// a VCS checkout, else "".
func vcsSuffix() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Version != "(devel)" {
		return ""
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = ", modified"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return " (" + rev + modified + ")"
}

// builtInCheckout reports whether this binary was built inside a VCS checkout
// (go build stamps vcs.* settings then), not from a module version.
func builtInCheckout() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs" {
			return true
		}
	}
	return false
}
