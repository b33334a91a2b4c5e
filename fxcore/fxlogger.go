package fxcore

import (
	"errors"
	"strings"
	"sync"

	"go.uber.org/dig"
	"go.uber.org/fx/fxevent"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewFxLogger routes Fx's own event log to zap: the noisy events (provided,
// invoked, hooks run) at debug, and each failure once at error, with its
// root cause (see DescribeError) in the field "cause" before the whole
// error. Fx reports one failure several times (the hook, the rollback, the
// start; the constructor, the invoke): the repeats are at debug.
func NewFxLogger(log *zap.Logger) fxevent.Logger { return newFxLogger(log, false) }

// NewFxDebugLogger is NewFxLogger with the failures at debug too, for a
// caller that reports the app's errors itself, once: martyfx.Run and fxtest
// print DescribeError of the error fx.New, Start or Stop returned.
func NewFxDebugLogger(log *zap.Logger) fxevent.Logger { return newFxLogger(log, true) }

func newFxLogger(log *zap.Logger, quiet bool) *fxLogger {
	log = log.Named("fx")
	events := &fxevent.ZapLogger{Logger: log}
	events.UseLogLevel(zapcore.DebugLevel)
	events.UseErrorLevel(zapcore.DebugLevel)
	return &fxLogger{events: events, log: log, quiet: quiet, reported: map[string]bool{}}
}

type fxLogger struct {
	events *fxevent.ZapLogger // every event at debug, failures included
	log    *zap.Logger
	quiet  bool

	mu       sync.Mutex
	reported map[string]bool // root causes logged at error
}

func (l *fxLogger) LogEvent(e fxevent.Event) {
	what, err := eventFailure(e)
	if err == nil || l.quiet || what == "" {
		l.events.LogEvent(e)
		return
	}
	cause := rootCause(err)
	l.mu.Lock()
	seen := l.reported[cause]
	l.reported[cause] = true
	l.mu.Unlock()
	if seen {
		l.events.LogEvent(e)
		return
	}
	fields := []zap.Field{zap.String("cause", cause)}
	if whole := oneLine(err.Error()); whole != cause {
		fields = append(fields, zap.String("error", whole))
	}
	l.log.Error(what+" failed", fields...)
}

// eventFailure returns the error an Fx event carries and what failed. A
// constructor's failure (Run) has no name: the invoke that needed it
// reports it.
func eventFailure(e fxevent.Event) (string, error) {
	switch e := e.(type) {
	case *fxevent.Run:
		return "", e.Err
	case *fxevent.Provided:
		return "provide", e.Err
	case *fxevent.Supplied:
		return "supply", e.Err
	case *fxevent.Replaced:
		return "replace", e.Err
	case *fxevent.Decorated:
		return "decorate", e.Err
	case *fxevent.Invoked:
		return "invoke", e.Err
	case *fxevent.OnStartExecuted:
		return "OnStart hook", e.Err
	case *fxevent.RollingBack:
		return "start", e.StartErr
	case *fxevent.Started:
		return "start", e.Err
	case *fxevent.RolledBack:
		return "rollback", e.Err
	case *fxevent.OnStopExecuted:
		return "OnStop hook", e.Err
	case *fxevent.Stopped:
		return "stop", e.Err
	case *fxevent.LoggerInitialized:
		return "custom logger", e.Err
	}
	return "", nil
}

// maxCause bounds the first line DescribeError writes, so that it stays
// readable under a prefix such as "martyfx: start: ".
const maxCause = 180

// DescribeError tells an error from fx.New, Start or Stop the way a person
// reads it: the root cause first, on one line of at most about 200
// characters, then, when it says more, the whole error once on a second
// line. The root cause is dig.RootCause's: the first error in the chain
// that is not Fx's own wrapping (a module's error, such as
// `fxhttp.AsRoute("GET /x"): ...` from a registration, or
// `fxhttp: listen on :8080: ...`), or, for a missing dependency, dig's
// error naming the function that needs it. With several errors the first
// is described.
func DescribeError(err error) string {
	if err == nil {
		return ""
	}
	cause := rootCause(err)
	whole := oneLine(err.Error())
	if whole == cause {
		return cause
	}
	return cause + "\n  the whole error: " + whole
}

// rootCause is DescribeError's first line.
func rootCause(err error) string {
	err = firstError(err)
	root := dig.RootCause(err)
	if _, isDig := root.(dig.Error); isDig { //nolint:errorlint // is the root itself dig's, not one it wraps
		// The chain ends in dig's own error (a missing type, a cycle): the
		// one that wraps it names the function.
		var parent error
		for e := err; e != nil; e = firstError(errors.Unwrap(e)) {
			if errors.Unwrap(e) == nil {
				break
			}
			parent = e
		}
		if _, ok := parent.(dig.Error); ok { //nolint:errorlint // parent itself: errors.As would find the root it wraps
			root = parent
		}
	}
	line := oneLine(root.Error())
	if r := []rune(line); len(r) > maxCause {
		line = string(r[:maxCause-1]) + "…"
	}
	return line
}

// firstError returns the first of joined errors (errors.Join, multierr).
func firstError(err error) error {
	for {
		multi, ok := err.(interface{ Unwrap() []error })
		if !ok {
			return err
		}
		errs := multi.Unwrap()
		if len(errs) == 0 {
			return err
		}
		err = errs[0]
	}
}

// oneLine folds a multi-line error text (Fx adds stack traces) onto one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
