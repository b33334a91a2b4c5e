package fxcore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type tlsConfig struct {
	CertFile string `koanf:"cert_file"`
	KeyFile  string `koanf:"key_file"`
}

type clientConfig struct {
	Target  string        `koanf:"target"`
	Timeout time.Duration `koanf:"timeout"`
}

type testConfig struct {
	Addr    string                  `koanf:"addr"`
	Timeout time.Duration           `koanf:"timeout"`
	Workers int                     `koanf:"workers"`
	Ratio   float64                 `koanf:"ratio"`
	Enabled bool                    `koanf:"enabled"`
	Mode    string                  `koanf:"mode"`
	Tags    []string                `koanf:"tags"`
	TLS     tlsConfig               `koanf:"tls"`
	Clients map[string]clientConfig `koanf:"clients"`
}

func defaultTestConfig() testConfig {
	return testConfig{Addr: ":8080", Timeout: 5 * time.Second, Workers: 4, Ratio: 0.5, Enabled: true, Mode: "fast"}
}

func (c testConfig) Validate() error {
	if err := OneOf("mode", c.Mode, "fast", "safe"); err != nil {
		return err
	}
	if c.Workers < 1 {
		return Invalid("workers", c.Workers, "at least 1")
	}
	return nil
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func load(t *testing.T, file string, env ...string) (testConfig, error) {
	t.Helper()
	src, err := NewSourceFrom(file, env)
	require.NoError(t, err)
	return Load(src, "test", defaultTestConfig())
}

func TestDefaultsWhenNothingIsSet(t *testing.T) {
	t.Parallel()
	cfg, err := load(t, "")
	require.NoError(t, err)
	require.Equal(t, defaultTestConfig(), cfg)
}

func TestPrecedenceDefaultThenFileThenEnv(t *testing.T) {
	file := writeFile(t, `
test:
  addr: ":9000"
  timeout: 10s
  workers: 8
  tls:
    cert_file: /file/cert.pem
    key_file: /file/key.pem
  clients:
    orders:
      target: dns:///orders:50051
`)
	cfg, err := load(t, file,
		"MARTY_TEST_TIMEOUT=250ms",
		"MARTY_TEST_TLS_KEY_FILE=/env/key.pem",
		"MARTY_TEST_TAGS=a,b,c",
		"MARTY_TEST_ENABLED=false",
		"MARTY_TEST_CLIENTS_ORDERS_TIMEOUT=2s",
		"MARTY_TEST_CLIENTS_BILLING_TARGET=billing:1",
		"UNRELATED=1",
	)
	require.NoError(t, err)
	require.Equal(t, ":9000", cfg.Addr, "file beats default")
	require.Equal(t, 250*time.Millisecond, cfg.Timeout, "env beats file")
	require.Equal(t, 8, cfg.Workers)
	require.Equal(t, 0.5, cfg.Ratio, "default kept when neither sets it")
	require.False(t, cfg.Enabled)
	require.Equal(t, []string{"a", "b", "c"}, cfg.Tags)
	require.Equal(t, tlsConfig{CertFile: "/file/cert.pem", KeyFile: "/env/key.pem"}, cfg.TLS)
	require.Equal(t, map[string]clientConfig{
		"orders":  {Target: "dns:///orders:50051", Timeout: 2 * time.Second},
		"billing": {Target: "billing:1"},
	}, cfg.Clients)
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		file string
		env  []string
		want string
	}{
		{"bad duration", "", []string{"MARTY_TEST_TIMEOUT=abc"},
			`fxcore: invalid MARTY_TEST_TIMEOUT="abc": want a duration such as 500ms, 5s or 1m`},
		{"bad int", "", []string{"MARTY_TEST_WORKERS=many"},
			`fxcore: invalid MARTY_TEST_WORKERS="many": want an integer`},
		{"bad bool", "", []string{"MARTY_TEST_ENABLED=maybe"},
			`fxcore: invalid MARTY_TEST_ENABLED="maybe": want true or false`},
		{"bad float", "", []string{"MARTY_TEST_RATIO=half"},
			`fxcore: invalid MARTY_TEST_RATIO="half": want a number`},
		{"bad enum", "", []string{"MARTY_TEST_MODE=turbo"},
			`fxcore: invalid MARTY_TEST_MODE="turbo": want one of "fast", "safe"`},
		{"validate range", "", []string{"MARTY_TEST_WORKERS=0"},
			`fxcore: invalid MARTY_TEST_WORKERS=0: want at least 1`},
		{"bad duration in file", "test:\n  timeout: 5\n", nil,
			`fxcore: invalid test.timeout=5 in FILE: want a duration such as 500ms, 5s or 1m`},
		{"bad enum in file", "test:\n  mode: turbo\n", nil,
			`fxcore: invalid test.mode="turbo" in FILE: want one of "fast", "safe"`},
		{"unknown file key", "test:\n  adr: x\n", nil,
			`fxcore: config file FILE: unknown key "adr" in section "test" (known keys: addr, timeout, workers, ratio, enabled, mode, tags, tls.cert_file, tls.key_file, clients)`},
		{"unknown nested file key", "test:\n  tls:\n    cert: x\n", nil,
			`fxcore: config file FILE: unknown key "tls.cert" in section "test" (known keys: addr, timeout, workers, ratio, enabled, mode, tags, tls.cert_file, tls.key_file, clients)`},
		{"section is not a mapping", "test: 3\n", nil,
			`fxcore: config file FILE: "test" must be a mapping of settings, got int`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			file := ""
			if tc.file != "" {
				file = writeFile(t, tc.file)
			}
			_, err := load(t, file, tc.env...)
			require.Error(t, err)
			want := tc.want
			if file != "" {
				want = strings.ReplaceAll(want, "FILE", file)
			}
			require.Equal(t, want, err.Error())
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := NewSourceFrom(missing, nil)
	require.EqualError(t, err, "fxcore: read config file "+missing+" (MARTY_CONFIG_FILE): open "+missing+": no such file or directory")

	unreadable := writeFile(t, "test:\n  addr: x\n")
	require.NoError(t, os.Chmod(unreadable, 0o000))
	if f, err := os.Open(unreadable); err == nil { // root can read anything
		f.Close()
	} else {
		_, err := NewSourceFrom(unreadable, nil)
		require.ErrorContains(t, err, "fxcore: read config file "+unreadable+" (MARTY_CONFIG_FILE): ")
		require.ErrorContains(t, err, "permission denied")
	}

	dir := t.TempDir()
	_, err = NewSourceFrom(dir, nil)
	require.ErrorContains(t, err, "fxcore: read config file "+dir+" (MARTY_CONFIG_FILE): ")

	notYAML := writeFile(t, "test: [unclosed\n")
	_, err = NewSourceFrom(notYAML, nil)
	require.ErrorContains(t, err, "fxcore: read config file "+notYAML+" (MARTY_CONFIG_FILE): ")
}

func TestTopLevelSectionAndUnusedSections(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "env: staging\nstop_timeout: 7s\nlog:\n  level: debug\ngrcp:\n  addr: x\n")
	src, err := NewSourceFrom(file, []string{"MARTY_START_TIMEOUT=3s"})
	require.NoError(t, err)
	core, err := Load(src, "", DefaultConfig())
	require.NoError(t, err)
	require.Equal(t, Config{Env: "staging", StartTimeout: 3 * time.Second, StopTimeout: 7 * time.Second}, core)
	logCfg, err := Load(src, "log", DefaultLogConfig())
	require.NoError(t, err)
	require.Equal(t, "debug", logCfg.Level)
	require.Equal(t, []string{"grcp"}, src.UnusedSections())

	bad := writeFile(t, "evn: staging\n")
	src, err = NewSourceFrom(bad, nil)
	require.NoError(t, err)
	_, err = Load(src, "", DefaultConfig())
	require.EqualError(t, err, `fxcore: config file `+bad+`: unknown key "evn" at the top level (known keys: env, start_timeout, stop_timeout)`)
}

func TestEnvName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "MARTY_HTTP_ADMIN_ADDR", EnvName("http", "admin_addr"))
	require.Equal(t, "MARTY_GRPC_TLS_CERT_FILE", EnvName("grpc", "tls.cert_file"))
	require.Equal(t, "MARTY_ENV", EnvName("", "env"))
}

func TestLoadErrorsWrapTheFieldError(t *testing.T) {
	t.Parallel()
	_, err := load(t, "", "MARTY_TEST_WORKERS=many")
	var fe *FieldError
	require.ErrorAs(t, err, &fe, "a value that does not decode")
	require.Equal(t, "workers", fe.Key)
	require.Equal(t, "many", fe.Value)
	require.Equal(t, "an integer", fe.Want)
	require.Error(t, fe.Err, "the decoding error is kept as the cause")

	_, err = load(t, "", "MARTY_TEST_MODE=turbo")
	require.ErrorAs(t, err, &fe, "a Validate failure")
	require.Equal(t, "mode", fe.Key)
	require.NoError(t, fe.Unwrap())

	cause := errors.New("disk full")
	wrapped := &FieldError{Key: "k", Value: 1, Want: "2", Err: cause}
	require.ErrorIs(t, wrapped, cause)
}

type mapEntry struct {
	File    string `koanf:"file"`
	TLSFile string `koanf:"tls_file"`
}

type mapConfig struct {
	Entries map[string]mapEntry `koanf:"entries"`
}

func (mapConfig) Validate() error { return nil }

func TestEnvMapEntriesTakeTheLongestFieldName(t *testing.T) {
	t.Parallel()
	src := mustSource(t, "MARTY_M_ENTRIES_A_B_TLS_FILE=x", "MARTY_M_ENTRIES_C_FILE=y", "MARTY_M_ENTRIES__FILE=no entry name")
	cfg, err := Load(src, "m", mapConfig{})
	require.NoError(t, err)
	require.Equal(t, map[string]mapEntry{"a_b": {TLSFile: "x"}, "c": {File: "y"}}, cfg.Entries)
}

func TestUnknownVariablesAndTheirNearestKnownNames(t *testing.T) {
	t.Parallel()
	src := mustSource(t,
		"MARTY_TEST_ADR=:1",                  // typo of MARTY_TEST_ADDR, but MARTY_TEST_* are test settings
		"MARTY_TSET_ADDR=:1",                 // typo of the section
		"MARTY_TEST2_WORKERS=1",              // a section nobody loads
		"MARTY_QUEUE_WORKERS=1",              // far from anything
		"MARTY_M_ENTRIES_ORDERS_FIEL=/x",     // a map entry's misspelt field
		"MARTY_M_ENTRIES_ORDERS_TLS_FILE=/y", // known
		"MARTY_STOP_TIMOUT=1s",               // top level
		"MARTY_CONFIG_FILE=",                 // not config
		"MARTY_ARTIFACTS_DIR=/tmp",           // not config
		"MARTY_OWN_SETTING=1",                // looked up with Env below
		"MARTY_HTTP_ADMIN_TOKN=s3cret",       // resembles a secret's name (via suggestion below)
		"MARTY_PAYMENTS_API_KEY=k",           // names a secret
		"OTEL_SERVICE_NAMEE=x",               // not ours
	)
	_, err := Load(src, "m", mapConfig{})
	require.NoError(t, err)
	_, err = Load(src, "", DefaultConfig())
	require.NoError(t, err)
	_, err = Load(src, "test", defaultTestConfig())
	require.NoError(t, err)
	_, err = Load(src, "http", adminToken{})
	require.NoError(t, err)
	src.Env("MARTY_OWN_SETTING")

	require.Equal(t, []unknownVar{
		{name: "MARTY_HTTP_ADMIN_TOKN", suggest: "MARTY_HTTP_ADMIN_TOKEN", secret: true},
		{name: "MARTY_M_ENTRIES_ORDERS_FIEL", suggest: "MARTY_M_ENTRIES_ORDERS_FILE"},
		{name: "MARTY_PAYMENTS_API_KEY", secret: true},
		{name: "MARTY_QUEUE_WORKERS"},
		{name: "MARTY_STOP_TIMOUT", suggest: "MARTY_STOP_TIMEOUT"},
		{name: "MARTY_TEST2_WORKERS", suggest: "MARTY_TEST_WORKERS"},
		{name: "MARTY_TSET_ADDR", suggest: "MARTY_TEST_ADDR"},
	}, src.unknownEnv())
}

type adminToken struct {
	AdminToken string `koanf:"admin_token"`
}

func (adminToken) Validate() error { return nil }

func TestSecretNames(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"MARTY_X_TOKEN", "MARTY_DB_DSN", "MARTY_X_PASSWORD", "MARTY_X_SECRET_FILE", "MARTY_X_APIKEY", "MARTY_X_KEY_FILE", "MARTY_X_CREDENTIALS"} {
		require.True(t, secretName(name), name)
	}
	for _, name := range []string{"MARTY_HTTP_ADDR", "MARTY_MONKEYS", "MARTY_KEYSPACE", "MARTY_TOKN"} {
		require.False(t, secretName(name), name)
	}
}

func TestLevenshtein(t *testing.T) {
	t.Parallel()
	require.Equal(t, 0, levenshtein("", ""))
	require.Equal(t, 3, levenshtein("", "abc"))
	require.Equal(t, 1, levenshtein("MARTY_HTTP_ADMIN_TOKN", "MARTY_HTTP_ADMIN_TOKEN"))
	require.Equal(t, 2, levenshtein("MARTY_TSET_ADDR", "MARTY_TEST_ADDR"))
	require.Equal(t, 3, levenshtein("kitten", "sitting"))
}
