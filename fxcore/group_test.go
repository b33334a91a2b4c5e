package fxcore

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/dig"
	"go.uber.org/fx"
)

type greeter struct{ name string }

func (g greeter) ServeHTTP(http.ResponseWriter, *http.Request) {}

func toHandler(v any) (http.Handler, error) {
	h, ok := v.(http.Handler)
	if !ok {
		return nil, errors.New("want an http.Handler")
	}
	return h, nil
}

type handlers struct {
	fx.In
	All []http.Handler `group:"test.handlers"`
}

func newGreeter(s string) greeter                     { return greeter{s} }
func newNumber() int                                  { return 1 }
func newBroken() (http.Handler, error)                { return nil, errors.New("boom") }
func plainHandler(http.ResponseWriter, *http.Request) {}
func noResult()                                       {}
func variadic(...string) http.Handler                 { return nil }

func TestGroupAcceptsValuesAndConstructorsAndRejectsWrongTypes(t *testing.T) {
	t.Parallel()
	var got handlers
	app := fx.New(fx.NopLogger,
		fx.Supply("injected"),
		Group("test.handlers", "value", greeter{"value"}, toHandler),
		Group("test.handlers", "ctor", newGreeter, toHandler),
		Group("test.handlers", "same ctor again", newGreeter, toHandler),
		Group("test.handlers", "ctor with error", func() (http.Handler, error) { return greeter{"e"}, nil }, toHandler),
		Group("test.handlers", "ctor with fx.In", func(p struct {
			fx.In
			S string
		}) http.Handler {
			return greeter{p.S + "!"}
		}, toHandler),
		fx.Populate(&got),
	)
	require.NoError(t, app.Err())
	require.Len(t, got.All, 5)
	require.Contains(t, got.All, http.Handler(greeter{"injected"}))
	require.Contains(t, got.All, http.Handler(greeter{"injected!"}))
	require.Contains(t, got.All, http.Handler(greeter{"value"}))

	app = fx.New(fx.NopLogger, Group("test.handlers", `AsX("a")`, newNumber, toHandler), fx.Populate(&got))
	require.ErrorContains(t, app.Err(), `AsX("a"): fxcore.newNumber: constructor func() int: want an http.Handler`)

	app = fx.New(fx.NopLogger, Group("test.handlers", `AsX("b")`, 42, toHandler))
	require.EqualError(t, app.Err(), `AsX("b"): want an http.Handler`)

	app = fx.New(fx.NopLogger, Group("test.handlers", `AsX("c")`, noResult, toHandler))
	require.ErrorContains(t, app.Err(), `AsX("c"): fxcore.noResult: want an http.Handler, or a constructor that returns one (and optionally an error)`)

	app = fx.New(fx.NopLogger, Group("test.handlers", `AsX("d")`, plainHandler, toHandler))
	require.EqualError(t, app.Err(), `AsX("d"): fxcore.plainHandler: want an http.Handler, or a constructor that returns one (and optionally an error)`)

	app = fx.New(fx.NopLogger, Group("test.handlers", `AsX("e")`, variadic, toHandler))
	require.ErrorContains(t, app.Err(), `AsX("e"): fxcore.variadic: constructor func(...string) http.Handler must not be variadic`)

	app = fx.New(fx.NopLogger, Group("test.handlers", `AsX("f")`, nil, toHandler))
	require.EqualError(t, app.Err(), `AsX("f"): constructor is nil`)
}

// The user's constructor is what Fx provides: Fx's errors and its graph
// name it, not a reflect.MakeFunc stub.
func TestGroupKeepsTheUsersFunctionInFxErrorsAndGraph(t *testing.T) {
	t.Parallel()
	var got handlers
	app := fx.New(fx.NopLogger, Group("test.handlers", "AsX", newBroken, toHandler), fx.Populate(&got))
	require.Error(t, app.Err())
	require.Contains(t, app.Err().Error(), `"github.com/martyfx/martyfx/fxcore".newBroken`)
	require.EqualError(t, dig.RootCause(app.Err()), "boom")

	var dot fx.DotGraph
	app = fx.New(fx.NopLogger, fx.Supply("x"), Group("test.handlers", "AsX", newGreeter, toHandler), fx.Populate(&got, &dot))
	require.NoError(t, app.Err())
	require.Contains(t, string(dot), `label="newGreeter"`)
	// The converter next to it is fx.Annotate's (a MakeFunc stub upstream);
	// the constructor itself is the only node providing the user's type.
	for _, line := range strings.Split(string(dot), "\n") {
		if strings.Contains(line, "fxcore.greeter[name=") {
			require.NotContains(t, line, "makeFuncStub")
		}
	}
}
