package fxrepo

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/internal/pgtest"
)

// The DSN of the issue: url.Parse refuses it ('#' starts a fragment), pgx
// reads it, and the old redaction logged it whole.
const leakyDSN = "postgres://app2:Leak#Frag99@127.0.0.1:55432/orders2"

func TestRedactPostgresUsesPgxParse(t *testing.T) {
	t.Parallel()
	for dsn, want := range map[string]string{
		leakyDSN: "postgres://app2:xxxxx@127.0.0.1:55432/orders2",
		"postgres://app:p%40ss%2Fw%3Frd@db.internal:5433/orders?sslmode=disable":               "postgres://app:xxxxx@db.internal:5433/orders",
		"postgresql://app@db:5432/orders?password=s3cr%26t&sslmode=disable":                    "postgres://app:xxxxx@db:5432/orders",
		`host=db port=5432 user=app dbname=orders password='it\'s a \\secret' sslmode=disable`: "postgres://app:xxxxx@db:5432/orders",
		"postgres://app:secret@db:notaport/orders":                                             "",
		"host=db port=5432 user=app dbname=orders password='with space' sslmode=disable":       "postgres://app:xxxxx@db:5432/orders",
		"host=db user=app dbname=orders password=pl@in:pw sslmode=disable":                     "postgres://app:xxxxx@db:5432/orders",
		"postgres://app@h1:5432,h2:5433/orders?sslmode=disable":                                "postgres://app@h1:5432,h2:5433/orders",
	} {
		tg, err := resolve(Config{Driver: DriverPostgres, DSN: dsn}, "svc")
		if want == "" {
			// A DSN pgx refuses: the error names no secret.
			require.Error(t, err, dsn)
			require.NotContains(t, err.Error(), "secret", dsn)
			continue
		}
		require.NoError(t, err, dsn)
		require.Equal(t, want, tg.redacted, dsn)
	}
}

func TestScrubAllForms(t *testing.T) {
	t.Parallel()
	pw := `a#b@c/d?e%f:g'h"i j\k`
	tg := target{secrets: secretForms(pw)}
	for _, shown := range []string{
		pw, url.PathEscape(pw), url.QueryEscape(pw), url.UserPassword("u", pw).String(),
		strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw), fmt.Sprintf("%q", pw),
	} {
		err := tg.scrub(fmt.Errorf("driver said: %s", shown))
		require.NotContains(t, err.Error(), pw, shown)
		require.NotContains(t, err.Error(), strings.Trim(fmt.Sprintf("%q", pw), `"`), shown)
		require.Contains(t, err.Error(), "xxxxx")
	}
	require.Nil(t, tg.scrub(nil))
}

// FuzzRedactPostgresDSN builds DSNs in both forms around random passwords
// and checks that the password appears in no output: the redacted target,
// the start error (connecting to a closed port), the start's log lines, the
// readiness check's error and, when MARTY_TEST_POSTGRES_DSN points at a
// trust-auth server, the "database ready" line of a successful start.
//
// An output may contain the password's text by coincidence ("a", "5432"):
// a leak is a text that shows up with this password and not with another.
func FuzzRedactPostgresDSN(f *testing.F) {
	for _, seed := range []string{
		"Leak#Frag99", "p@ss/w?rd", "pa%20ss%zz", "a:b:c", "it's", `say "hi"`, "with space", `back\slash`,
		`#@/?%:'" x`, "é-ünïcode", "%", "@", "''", "password=x",
		"x\xff\xffs/w?rd",
	} {
		f.Add(seed)
	}
	closed := closedAddr(f)
	live := os.Getenv(pgtest.EnvDSN)
	f.Fuzz(func(t *testing.T, pw string) {
		if pw == "" || strings.ContainsRune(pw, 0) || strings.ContainsAny(pw, "\r\n") {
			t.Skip("pgx refuses NUL; an empty password is no secret")
		}
		other := "Zz9" + strings.Repeat("q", len(pw)%7)
		for _, form := range dsnForms {
			got := outputs(t, form(closed, "app", pw), closed)
			var base []string
			for i, out := range got {
				if !strings.Contains(out, pw) {
					continue
				}
				if base == nil {
					base = outputs(t, form(closed, "app", other), closed)
				}
				if !strings.Contains(base[i], pw) {
					t.Fatalf("password %q leaks in output %d: %s", pw, i, out)
				}
			}
		}
		if live == "" {
			return
		}
		lc, err := pgx.ParseConfig(live)
		require.NoError(t, err)
		addr := net.JoinHostPort(lc.Host, fmt.Sprint(lc.Port))
		for _, form := range dsnForms[:2] { // a trust-auth server ignores the password
			form := func(addr, user, pw string) string {
				dsn := form(addr, user, pw)
				dsn = strings.Replace(dsn, "/orders", "/"+lc.Database, 1)
				return strings.Replace(dsn, "dbname=orders", "dbname="+lc.Database, 1)
			}
			dsn := form(addr, lc.User, pw)
			if !targets(dsn, addr) {
				continue
			}
			got := readyLines(t, dsn)
			if strings.Contains(got, pw) && !strings.Contains(readyLines(t, form(addr, lc.User, other)), pw) {
				t.Fatalf("password %q leaks in %s", pw, got)
			}
		}
	})
}

// dsnForms build a DSN for host:port, user and password in each form a
// user may write.
var dsnForms = []func(addr, user, pw string) string{
	func(addr, user, pw string) string { // URL, userinfo escaped
		return "postgres://" + url.UserPassword(user, pw).String() + "@" + addr + "/orders?sslmode=disable"
	},
	func(addr, user, pw string) string { // key=value, quoted
		host, port, _ := net.SplitHostPort(addr)
		q := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(pw)
		return fmt.Sprintf("host=%s port=%s user=%s dbname=orders sslmode=disable password='%s'", host, port, user, q)
	},
	func(addr, user, pw string) string { // URL, written raw (may not parse)
		return "postgres://" + user + ":" + pw + "@" + addr + "/orders?sslmode=disable"
	},
	func(addr, user, pw string) string { // key=value, bare (may not parse)
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=orders sslmode=disable", host, port, user, pw)
	},
	func(addr, user, pw string) string { // URL, password in the query
		return "postgres://" + user + "@" + addr + "/orders?sslmode=disable&password=" + url.QueryEscape(pw)
	},
}

// targets reports whether pgx reads the DSN as pointing at addr only: a
// password written raw may move the host ("x@elsewhere", "x host=..."), and
// the test connects nowhere but to its own loopback address.
func targets(dsn, addr string) bool {
	pc, err := pgx.ParseConfig(dsn)
	if err != nil {
		return false
	}
	if net.JoinHostPort(pc.Host, fmt.Sprint(pc.Port)) != addr {
		return false
	}
	for _, f := range pc.Fallbacks {
		if net.JoinHostPort(f.Host, fmt.Sprint(f.Port)) != addr {
			return false
		}
	}
	return true
}

// outputs opens the DSN against a closed port and returns, in a fixed
// order, everything shown to operators: the redacted target, the start
// error, each log line with its fields, the readiness check's error. A DSN
// that does not parse, or that pgx reads as another address, is not
// connected to: its outputs are the parse error and the redacted target.
func outputs(t *testing.T, dsn, closed string) []string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Driver, cfg.DSN = DriverPostgres, dsn
	cfg.ConnectTimeout, cfg.ConnectBackoff, cfg.ConnectBackoffMax = 15*time.Millisecond, 10*time.Millisecond, 10*time.Millisecond
	core, logs := observer.New(zapcore.DebugLevel)
	out := make([]string, 4)
	d, err := NewDatabase(cfg, DatabaseOptions{Logger: zap.New(core)})
	if err != nil {
		out[1] = err.Error() // a DSN pgx cannot parse
		return out
	}
	out[0] = d.target.redacted
	if !targets(dsn, closed) {
		_ = d.sqlDB.Close()
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Check(ctx); err != nil {
		out[3] = err.Error()
	}
	err = d.Start(ctx)
	require.Error(t, err, "nothing listens there")
	out[1] = err.Error()
	out[2] = logText(logs)
	return out
}

// readyLines starts a database for real and returns its log lines.
func readyLines(t *testing.T, dsn string) string {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := DefaultConfig()
	cfg.Driver, cfg.DSN, cfg.Migrate, cfg.AutoMigrate = DriverPostgres, dsn, false, false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := NewDatabase(cfg, DatabaseOptions{Logger: zap.New(core)})
	if err == nil {
		err = d.Start(ctx)
	}
	if err == nil {
		require.NoError(t, d.Stop(ctx))
		require.NotEmpty(t, logs.FilterMessage("database ready").All())
	}
	text := logText(logs)
	if err != nil {
		text += err.Error()
	}
	return text
}

func logText(logs *observer.ObservedLogs) string {
	var b strings.Builder
	for _, e := range logs.All() {
		b.WriteString(e.Message)
		for k, v := range e.ContextMap() {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func closedAddr(f *testing.F) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f, err)
	addr := l.Addr().String()
	require.NoError(f, l.Close())
	return addr
}
