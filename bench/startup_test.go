package bench

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx"
)

// BenchmarkStartup measures fx.New to started for martyfx.Modules on
// embedded defaults, next to a bare Fx app with as many trivial providers.
func BenchmarkStartup(b *testing.B) {
	b.Run("martyfx.Modules", func(b *testing.B) {
		dir := b.TempDir()
		b.Chdir(dir)
		b.Setenv("MARTY_LOG_LEVEL", "error")
		benchAddrs(b)
		for b.Loop() {
			app := fx.New(append(append([]fx.Option{}, martyfx.Modules...), fx.NopLogger)...)
			if err := app.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := app.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("bare-fx-30-providers", func(b *testing.B) {
		for b.Loop() {
			app := fx.New(append(trivialProviders(30), fx.NopLogger)...)
			if err := app.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			_ = app.Stop(context.Background())
			b.StartTimer()
		}
	})
}

type trivial[T any] struct{ v T }

func trivialProviders(n int) []fx.Option {
	var opts []fx.Option
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		opts = append(opts, fx.Provide(fx.Annotate(func() *trivial[int] { return &trivial[int]{i} }, fx.ResultTags(`name:"`+name+`"`))))
		opts = append(opts, fx.Invoke(fx.Annotate(func(*trivial[int]) {}, fx.ParamTags(`name:"`+name+`"`))))
	}
	return opts
}

// benchAddrs binds every server to a free loopback port, for the rest of
// the benchmark (b.Setenv restores the environment after it).
func benchAddrs(b *testing.B) {
	for _, kv := range [][2]string{
		{"MARTY_HTTP_ADDR", "127.0.0.1:0"},
		{"MARTY_HTTP_ADMIN_ADDR", "127.0.0.1:0"},
		{"MARTY_GRPC_ADDR", "127.0.0.1:0"},
	} {
		b.Setenv(kv[0], kv[1])
	}
}
