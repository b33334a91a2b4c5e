package fxcore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

type missing struct{}

func TestDescribeErrorPutsTheRootCauseFirst(t *testing.T) {
	t.Parallel()
	var got handlers
	cases := []struct {
		name      string
		opts      []fx.Option
		cause     string
		wholeHas  string
		noneWhole bool
	}{
		{"a registration of the wrong shape", []fx.Option{Group("test.handlers", `fxhttp.AsRoute("GET /x")`, plainHandler, toHandler)},
			`fxhttp.AsRoute("GET /x"): fxcore.plainHandler: want an http.Handler, or a constructor that returns one (and optionally an error)`, "", true},
		{"a constructor of the wrong type", []fx.Option{Group("test.handlers", `fxhttp.AsRoute("GET /x")`, newNumber, toHandler), fx.Populate(&got)},
			`fxhttp.AsRoute("GET /x"): fxcore.newNumber: constructor func() int: want an http.Handler`, `could not build value group`, false},
		{"a constructor that fails", []fx.Option{Group("test.handlers", "AsX", newBroken, toHandler), fx.Populate(&got)},
			"boom", `"github.com/martyfx/martyfx/fxcore".newBroken`, false},
		{"a missing dependency", []fx.Option{fx.Invoke(func(missing) {})},
			`missing dependencies for function "github.com/martyfx/martyfx/fxcore".TestDescribeErrorPutsTheRootCauseFirst.func1`, "missing type", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			app := fx.New(append([]fx.Option{fx.NopLogger}, tc.opts...)...)
			require.Error(t, app.Err())
			lines := strings.Split(DescribeError(app.Err()), "\n")
			require.True(t, strings.HasPrefix(lines[0], tc.cause), "first line %q", lines[0])
			require.LessOrEqual(t, len([]rune(lines[0])), 180)
			require.NotContains(t, lines[0], "makeFuncStub")
			if tc.noneWhole {
				require.Len(t, lines, 1, "the cause is the whole error")
				return
			}
			require.Len(t, lines, 2)
			require.True(t, strings.HasPrefix(lines[1], "  the whole error: "))
			require.Contains(t, lines[1], tc.wholeHas)
			desc := DescribeError(app.Err())
			require.Equal(t, 1, strings.Count(desc, strings.TrimPrefix(lines[1], "  the whole error: ")), "the chain is printed once")
			require.LessOrEqual(t, strings.Count(desc, tc.cause), 2, "the cause: first, and at the end of the chain")
		})
	}

	require.Equal(t, "first\n  the whole error: first second", DescribeError(errors.Join(errors.New("first"), errors.New("second"))))
	long := errors.New(strings.Repeat("x", 300))
	require.Len(t, []rune(strings.Split(DescribeError(long), "\n")[0]), 180)
	require.Empty(t, DescribeError(nil))
}

func startFailing(t *testing.T, logger func(*zap.Logger) fxevent.Logger) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	app := fx.New(
		fx.WithLogger(func() fxevent.Logger { return logger(log) }),
		fx.Invoke(func(lc fx.Lifecycle) {
			lc.Append(fx.StartHook(func() error { return errors.New("fxtest: port 1 in use") }))
		}),
	)
	require.NoError(t, app.Err())
	require.EqualError(t, app.Start(context.Background()), "fxtest: port 1 in use")
	return logs
}

func TestFxLoggerReportsEachFailureOnce(t *testing.T) {
	t.Parallel()
	logs := startFailing(t, NewFxLogger)
	failures := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	require.Len(t, failures, 1, "the hook, the rollback and the start report one failure")
	require.Equal(t, "OnStart hook failed", failures[0].Message)
	require.Equal(t, map[string]any{"cause": "fxtest: port 1 in use"}, failures[0].ContextMap())
	require.Equal(t, "fx", failures[0].LoggerName)
	require.Positive(t, logs.FilterLevelExact(zapcore.DebugLevel).FilterMessage("start failed").Len(), "the repeats are at debug")

	logs = startFailing(t, NewFxDebugLogger)
	require.Zero(t, logs.FilterLevelExact(zapcore.ErrorLevel).Len(), "the caller reports the failure")
	require.Positive(t, logs.FilterMessage("OnStart hook failed").Len(), "at debug")
}
