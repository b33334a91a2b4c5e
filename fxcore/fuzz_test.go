package fxcore

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary YAML and environment values to the loader: it
// must return an error or a valid config, never panic.
func FuzzLoad(f *testing.F) {
	f.Add("test:\n  addr: x\n  timeout: 5s\n", "10s", "3")
	f.Add("test:\n  clients:\n    a:\n      target: b\n", "abc", "-1")
	f.Add("env: prod\ntest: {tls: {cert_file: 1}}\n", "", "1e9")
	f.Add("test: [1,2]\n", "1h", "0x10")
	f.Add(":\n- -\n  ]", "\x00", "true")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, yaml, dur, num string) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		src, err := NewSourceFrom(path, []string{
			"MARTY_TEST_TIMEOUT=" + dur,
			"MARTY_TEST_WORKERS=" + num,
			"MARTY_TEST_RATIO=" + num,
			"MARTY_TEST_TAGS=" + dur,
			"MARTY_TEST_CLIENTS_X_TIMEOUT=" + dur,
			"MARTY_TEST_MODE=" + dur,
		})
		if err != nil {
			return
		}
		cfg, err := Load(src, "test", defaultTestConfig())
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Load returned a config that fails Validate: %v", err)
		}
		if core, err := Load(src, "", DefaultConfig()); err == nil && core.Validate() != nil {
			t.Fatalf("Load returned an invalid core config: %+v", core)
		}
	})
}
