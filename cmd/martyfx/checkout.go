package main

import (
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/semver"
)

// devBuild reports whether v, this binary's martyfx version, names nothing a
// module proxy is known to serve: "(devel)" (a build inside a checkout
// without VCS stamping), a version stamped from a local commit (a
// pseudo-version, maybe "+dirty"), or any build Go stamped with VCS
// settings, which only happens for a build inside a checkout.
func devBuild(v string) bool {
	return !semver.IsValid(v) || semver.Build(v) != "" || builtInCheckout()
}

// checkoutSearch returns where a development build looks for the martyfx
// checkout it was built from, in order:
//
//  1. the directory of this source file as the compiler recorded it: for
//     `go run ./cmd/martyfx`, `go build` or `go install` in a clone, an
//     absolute path inside that clone, wherever the binary runs from; the
//     module root above it is the checkout whose code this binary embeds
//     (its templates match that checkout's API). A -trimpath build records
//     a module-relative path instead, which is skipped.
//  2. the working directory: for a -trimpath development build run inside a
//     clone, or a binary whose clone has moved.
func checkoutSearch() []string {
	var dirs []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dirs = append(dirs, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = append(dirs, wd)
	}
	return dirs
}

// findCheckout returns the root of the first martyfx checkout found from
// dirs: for each dir, the nearest directory at or above it that holds a
// go.mod (the module the go command would use there) is the answer if that
// go.mod declares github.com/martyfx/martyfx. It returns "" when none does.
func findCheckout(dirs []string) string {
	for _, dir := range dirs {
		dir, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		for {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
				if modfile.ModulePath(b) == martyfxModule {
					return dir
				}
				break // the nearest module is another one
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return ""
}
