// Command firstrun measures what a first `go test -race ./...` costs with a
// cold build cache (modules already downloaded): it runs the tests of the
// module in -dir with no test selected (`-run ^$`: compile, vet and link
// only) in a fresh GOCACHE, with -debug-actiongraph, and prints the CPU
// seconds by action (compile, vet, link) and the module trees that took the
// most compile time.
//
//	go run ./firstrun -dir ..            # the library
//	go run ./firstrun -dir ../tests      # the browser and Prometheus tests
//	go run ./firstrun -dir /path/to/generated -race=false   # a generated project, as its README runs it
//
// CPU seconds, not wall time, are the figure to compare on a shared machine.
package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type action struct {
	Mode    string `json:"Mode"`
	Package string `json:"Package"`
	CmdUser int64  `json:"CmdUser"`
	CmdSys  int64  `json:"CmdSys"`
}

func main() {
	dir := flag.String("dir", "..", "module whose tests to build")
	race := flag.Bool("race", true, "build with -race")
	top := flag.Int("top", 15, "module trees to list")
	flag.Parse()

	tmp, err := os.MkdirTemp("", "firstrun-")
	if err != nil {
		fatal(err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	graph := filepath.Join(tmp, "actions.json")
	args := []string{"test", "-count=1", "-run", "^$", "-debug-actiongraph=" + graph}
	if *race {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./...")...)
	cmd.Dir = *dir
	cmd.Env = append(os.Environ(), "GOCACHE="+filepath.Join(tmp, "cache"))
	began := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(began)
	if err != nil {
		fatal(fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out))
	}
	user, sys := cmd.ProcessState.UserTime(), cmd.ProcessState.SystemTime()

	raw, err := os.ReadFile(graph)
	if err != nil {
		fatal(err)
	}
	var actions []action
	if err := json.Unmarshal(raw, &actions); err != nil {
		fatal(err)
	}
	byMode := map[string]float64{}
	byTree := map[string]float64{}
	links := 0
	for _, a := range actions {
		s := float64(a.CmdUser+a.CmdSys) / 1e9
		switch a.Mode {
		case "build", "vet", "link":
			byMode[a.Mode] += s
		}
		if a.Mode == "link" {
			links++
		}
		if a.Mode == "build" {
			byTree[tree(a.Package)] += s
		}
	}
	fmt.Printf("go test -run '^$' (race %v) ./... in %s, cold GOCACHE\n", *race, *dir)
	fmt.Printf("wall %.0f s, CPU %.0f s (user %.0f, sys %.0f)\n", wall.Seconds(), (user + sys).Seconds(), user.Seconds(), sys.Seconds())
	fmt.Printf("compile %.0f CPU-s, vet %.0f, link %.0f (%d test binaries)\n", byMode["build"], byMode["vet"], byMode["link"], links)
	type row struct {
		tree string
		s    float64
	}
	var rows []row
	for t, s := range byTree {
		rows = append(rows, row{t, s})
	}
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(b.s, a.s) })
	fmt.Println("compile CPU-s by tree:")
	for _, r := range rows[:min(*top, len(rows))] {
		fmt.Printf("  %6.1f  %s\n", r.s, r.tree)
	}
}

// tree is the first three path elements of a non-standard package
// (github.com/owner/repo), "std" for the standard library.
func tree(pkg string) string {
	first, _, _ := strings.Cut(pkg, "/")
	if !strings.Contains(first, ".") {
		return "std"
	}
	parts := strings.SplitN(pkg, "/", 4)
	return strings.Join(parts[:min(3, len(parts))], "/")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "firstrun:", err)
	os.Exit(1)
}
