package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The README's index is what envindex writes today: a module that gains,
// loses or renames a variable, or changes a default, fails this test until
// `go run ./internal/envindex` has been run.
func TestREADMEIndexIsCurrent(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	table, err := index(root)
	require.NoError(t, err)
	want, err := splice(readme, table)
	require.NoError(t, err)
	require.Equal(t, string(want), string(readme), "README.md's variable index is stale: run go run ./internal/envindex")
}

// Every section a module loads (fxcore.ProvideConfig[...]("name", ...) in
// the source) is in the index's list.
func TestEverySectionIsIndexed(t *testing.T) {
	t.Parallel()
	root, err := repoRoot()
	require.NoError(t, err)
	provide := regexp.MustCompile(`fxcore\.ProvideConfig\[[^\]]+\]\("([^"]*)"`)
	var found []string
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bench" || d.Name() == "tests" || d.Name() == "example" || d.Name() == "cmd" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range provide.FindAllStringSubmatch(string(src), -1) {
			if m[1] != "grpc" || !strings.Contains(path, "fxcore") { // fxcore's doc example names "grpc"
				found = append(found, m[1])
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, found)
	var indexed []string
	for _, s := range sections {
		indexed = append(indexed, s.name)
	}
	for _, name := range found {
		require.True(t, slices.Contains(indexed, name), "section %q is loaded by a module but missing from envindex's sections", name)
	}
}

func TestSpliceNeedsTheMarkers(t *testing.T) {
	t.Parallel()
	_, err := splice([]byte("# no markers\n"), []byte("x"))
	require.ErrorContains(t, err, "markers")
}
