// Command footprint measures what a martyfx service costs before it does
// anything: binary size (and stripped), the indirect requirements a fresh
// module of the service gets, idle RSS, the files it writes into its
// working directory, the time from exec to ready, and whether heavy
// packages nobody asked for (ClickHouse, MySQL, brotli, nats-server) are
// linked. It prints a markdown table. Run it from bench/:
//
//	go run ./footprint                     # the checkout one level up
//	go run ./footprint -repo /path/to/other/checkout
//
// Each service in services/ is copied into its own module in a temp dir
// (replace github.com/martyfx/martyfx => -repo), tidied and built there;
// example/orders is built inside -repo. Every run starts the binary in a
// fresh empty directory with free ports (127.0.0.1:0), MARTY_ENV=development
// (the default: tracing exporter none, SQLite file, auto-migration) and
// nothing else set, waits for its ready line on stderr, waits -idle, reads
// VmRSS, RssAnon and RssFile from /proc/<pid>/status, lists the directory
// and stops it with SIGTERM. Medians over -runs runs. Linux only.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// heavy are module paths no service here should link.
var heavy = []struct{ name, path string }{
	{"clickhouse", "github.com/ClickHouse/clickhouse-go"},
	{"ch-go", "github.com/ClickHouse/ch-go"},
	{"mysql", "github.com/go-sql-driver/mysql"},
	{"gorm-mysql", "gorm.io/driver/mysql"},
	{"brotli", "github.com/andybalholm/brotli"},
	{"nats-server", "github.com/nats-io/nats-server"},
	{"cel-go", "github.com/google/cel-go"},
	{"autoexport", "go.opentelemetry.io/contrib/exporters/autoexport"},
}

type service struct {
	name   string
	dir    string   // services/<dir>, built as its own module; "" for example/orders
	tags   string   // build tags of example/orders (its Dockerfiles build with nonatsdev)
	env    []string // on top of the common environment
	orders bool
}

type result struct {
	name               string
	size, stripped     int64
	indirect, sumLines int // -1: not its own module
	rss, anon, file    int64
	start              time.Duration
	files              []string
	heavy              []string
	err                error
}

func main() {
	repo := flag.String("repo", "..", "martyfx checkout to measure")
	idle := flag.Duration("idle", 6*time.Second, "wait after ready before reading RSS")
	runs := flag.Int("runs", 3, "runs per service (medians)")
	natsURL := flag.String("nats", "nats://127.0.0.1:4222", `NATS server for the example/orders NATS row ("" skips it)`)
	keep := flag.Bool("keep", false, "keep the temp dir")
	only := flag.String("only", "", "comma-separated services to measure: route, leanhttp, leangrpc, orders, floor, nethttp (default all)")
	flag.Parse()
	if runtime.GOOS != "linux" {
		fatal(errors.New("footprint: reads /proc, Linux only"))
	}
	root, err := filepath.Abs(*repo)
	if err != nil {
		fatal(err)
	}
	here, err := filepath.Abs("footprint/services")
	if err != nil {
		fatal(err)
	}
	if _, err := os.Stat(here); err != nil {
		fatal(fmt.Errorf("footprint: run from bench/: %w", err))
	}
	tmp, err := os.MkdirTemp("", "footprint-")
	if err != nil {
		fatal(err)
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "footprint: temp dir", tmp)
	} else {
		defer func() { _ = os.RemoveAll(tmp) }() // best effort: the figures are printed already
	}

	services := []service{
		{name: "one route, `martyfx.Run`", dir: "route"},
		{name: "lean HTTP (fxcore, fxtracing, fxhttp, fxmonitor)", dir: "leanhttp"},
		{name: "lean gRPC, no DB (+ fxgrpc)", dir: "leangrpc"},
		{name: "`example/orders` (go run: with the embedded dev NATS)", orders: true},
		{name: "`example/orders`, `-tags nonatsdev` (its Dockerfile)", orders: true, tags: "nonatsdev"},
	}
	if *natsURL != "" {
		services = append(services, service{name: "`example/orders`, `-tags nonatsdev`, NATS", orders: true, tags: "nonatsdev",
			env: []string{"MARTY_NATS_URL=" + *natsURL}})
	}
	services = append(services,
		service{name: "floor: Fx, zap, net/http, Prometheus, OTel SDK + otelhttp + OTLP/HTTP by hand, no martyfx", dir: "floor"},
		service{name: "plain net/http", dir: "nethttp"})

	ordersBin, ordersStripped := map[string]string{}, map[string]string{}
	var results []result
	for _, s := range services {
		if *only != "" && !slices.ContainsFunc(strings.Split(*only, ","), func(n string) bool {
			return n == s.dir || (s.orders && n == "orders")
		}) {
			continue
		}
		fmt.Fprintln(os.Stderr, "footprint:", s.name)
		r := result{name: s.name, indirect: -1, sumLines: -1}
		bin, stripped := ordersBin[s.tags], ordersStripped[s.tags]
		if s.orders && bin == "" {
			bin, stripped = filepath.Join(tmp, "orders"+s.tags), filepath.Join(tmp, "orders"+s.tags+"-stripped")
			err = buildIn(root, bin, stripped, "./example/orders", "-tags="+s.tags)
			ordersBin[s.tags], ordersStripped[s.tags] = bin, stripped
		} else if !s.orders {
			mod := filepath.Join(tmp, "mod-"+s.dir)
			bin, stripped = filepath.Join(tmp, s.dir), filepath.Join(tmp, s.dir+"-stripped")
			r.indirect, r.sumLines, err = makeModule(mod, filepath.Join(here, s.dir), root)
			if err == nil {
				err = buildIn(mod, bin, stripped, ".")
			}
		}
		if err == nil {
			r.size, r.stripped, r.heavy, err = inspect(bin, stripped)
		}
		if err == nil {
			err = measure(&r, bin, tmp, s.env, *runs, *idle)
		}
		r.err = err
		if err != nil {
			fmt.Fprintln(os.Stderr, "footprint:", s.name+":", err)
		}
		results = append(results, r)
	}
	printTable(os.Stdout, results, *runs, *idle)
	if gomod, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil {
		sum, _ := os.ReadFile(filepath.Join(root, "go.sum"))
		fmt.Printf("\nThe library's own go.mod: %d indirect requires, go.sum %d lines.\n",
			strings.Count(string(gomod), "// indirect"), bytes.Count(sum, []byte("\n")))
	}
}

// makeModule writes the service as module footprint/<name> with the
// martyfx replace, tidies it and counts its indirect requirements and
// go.sum lines.
func makeModule(mod, src, root string) (indirect, sumLines int, err error) {
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return 0, 0, err
	}
	code, err := os.ReadFile(filepath.Join(src, "main.go"))
	if err != nil {
		return 0, 0, err
	}
	if err := os.WriteFile(filepath.Join(mod, "main.go"), code, 0o644); err != nil {
		return 0, 0, err
	}
	gomod := "module footprint/" + filepath.Base(src) + "\n\ngo 1.26.0\n"
	if bytes.Contains(code, []byte("github.com/martyfx/martyfx")) {
		gomod += "\nrequire github.com/martyfx/martyfx v0.0.0-00010101000000-000000000000\n" +
			"\nreplace github.com/martyfx/martyfx => " + root + "\n"
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		return 0, 0, err
	}
	if err := goCmd(mod, "mod", "tidy"); err != nil {
		return 0, 0, err
	}
	data, err := os.ReadFile(filepath.Join(mod, "go.mod"))
	if err != nil {
		return 0, 0, err
	}
	indirect = strings.Count(string(data), "// indirect")
	sum, err := os.ReadFile(filepath.Join(mod, "go.sum"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	return indirect, bytes.Count(sum, []byte("\n")), nil
}

func buildIn(dir, bin, stripped, pkg string, flags ...string) error {
	if err := goCmd(dir, append(append([]string{"build"}, flags...), "-o", bin, pkg)...); err != nil {
		return err
	}
	return goCmd(dir, append(append([]string{"build"}, flags...), "-ldflags=-s -w", "-o", stripped, pkg)...)
}

func goCmd(dir string, args ...string) error {
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s in %s: %w\n%s", strings.Join(args, " "), dir, err, out)
	}
	return nil
}

// inspect reads the sizes and which heavy modules `go version -m` lists.
func inspect(bin, stripped string) (size, strippedSize int64, found []string, err error) {
	for _, p := range []struct {
		path string
		n    *int64
	}{{bin, &size}, {stripped, &strippedSize}} {
		fi, err := os.Stat(p.path)
		if err != nil {
			return 0, 0, nil, err
		}
		*p.n = fi.Size()
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		return 0, 0, nil, fmt.Errorf("go version -m %s: %w", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || (f[0] != "dep" && f[0] != "=>") {
			continue
		}
		for _, h := range heavy {
			if strings.HasPrefix(f[1], h.path) && !slices.Contains(found, h.name) {
				found = append(found, h.name)
			}
		}
	}
	return size, strippedSize, found, nil
}

// measure runs the binary runs times and keeps the medians; the files are
// those of the first run.
func measure(r *result, bin, tmp string, env []string, runs int, idle time.Duration) error {
	var starts []time.Duration
	var rss, anon, file []int64
	for i := range runs {
		dir, err := os.MkdirTemp(tmp, "run-")
		if err != nil {
			return err
		}
		st, err := runOnce(bin, dir, env, idle)
		if err != nil {
			return err
		}
		starts = append(starts, st.start)
		rss, anon, file = append(rss, st.rss), append(anon, st.anon), append(file, st.file)
		if i == 0 {
			r.files = st.files
		}
	}
	r.start = median(starts)
	r.rss, r.anon, r.file = median(rss), median(anon), median(file)
	return nil
}

type sample struct {
	start           time.Duration
	rss, anon, file int64
	files           []string
}

func runOnce(bin, dir string, extra []string, idle time.Duration) (sample, error) {
	var s sample
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(),
		"MARTY_ENV=development",
		"MARTY_LOG_LEVEL=info",
		"MARTY_HTTP_ADDR=127.0.0.1:0",
		"MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
		"MARTY_GRPC_ADDR=127.0.0.1:0",
	)
	cmd.Env = append(cmd.Env, extra...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return s, err
	}
	cmd.Stdout = io.Discard
	var log bytes.Buffer
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return s, err
	}
	ready := make(chan time.Duration, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && (strings.Contains(line, "martyfx: started") || strings.Contains(line, "footprint: ready")) {
				ready <- time.Since(t0)
				sent = true
			}
			if log.Len() < 64<<10 {
				log.WriteString(line + "\n")
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		go func() {
			<-ctx.Done()
			if ctx.Err() == context.DeadlineExceeded {
				_ = cmd.Process.Kill()
			}
		}()
		<-done
		return cmd.Wait()
	}
	select {
	case s.start = <-ready:
	case <-done:
		err := cmd.Wait()
		return s, fmt.Errorf("%s exited before ready (%w):\n%s", bin, err, log.String())
	case <-time.After(60 * time.Second):
		_ = stop()
		return s, fmt.Errorf("%s not ready after 60s:\n%s", bin, log.String())
	}
	time.Sleep(idle)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		_ = stop()
		return s, err
	}
	s.rss, s.anon, s.file = statusKB(status, "VmRSS"), statusKB(status, "RssAnon"), statusKB(status, "RssFile")
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			rel, _ := filepath.Rel(dir, p)
			s.files = append(s.files, rel)
		}
		return nil
	})
	if err := stop(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return s, err
		}
		return s, fmt.Errorf("%s stopped with %w:\n%s", bin, err, log.String())
	}
	return s, nil
}

// cleanEnv is the process environment without MARTY_* and OTEL_*.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MARTY_") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

func statusKB(status []byte, key string) int64 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func median[T int64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func printTable(w io.Writer, rs []result, runs int, idle time.Duration) {
	fmt.Fprintf(w, "Medians of %d runs; RSS read %s after ready. MB = 10^6 bytes, MiB = 2^20.\n\n", runs, idle)
	fmt.Fprintln(w, "| service | binary MB | stripped MB | indirect deps | go.sum lines | idle RSS MiB | RssAnon MiB | RssFile MiB | exec → ready ms | files written | heavy packages linked |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		if r.err != nil {
			fmt.Fprintf(w, "| %s | error: %s |\n", r.name, strings.ReplaceAll(firstLine(r.err.Error()), "|", `\|`))
			continue
		}
		ind, sum := "– (library module)", "–"
		if r.indirect >= 0 {
			ind, sum = strconv.Itoa(r.indirect), strconv.Itoa(r.sumLines)
		}
		files := "none"
		if len(r.files) > 0 {
			files = "`" + strings.Join(r.files, "`, `") + "`"
		}
		h := "none"
		if len(r.heavy) > 0 {
			h = strings.Join(r.heavy, ", ")
		}
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %s | %s | %.1f | %.1f | %.1f | %.0f | %s | %s |\n",
			r.name, mb(r.size), mb(r.stripped), ind, sum, mib(r.rss), mib(r.anon), mib(r.file),
			float64(r.start.Microseconds())/1000, files, h)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func mb(n int64) float64   { return float64(n) / 1e6 }
func mib(kb int64) float64 { return float64(kb) / 1024 }

func fatal(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
