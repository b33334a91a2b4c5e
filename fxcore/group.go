package fxcore

import (
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"

	"go.uber.org/fx"
)

var errorType = reflect.TypeFor[error]()

// groupSeq names the value each registration's constructor provides, so
// that its converter (and nothing else) finds it.
var groupSeq atomic.Uint64

// Group provides into the value group `group` a T built from ctor. It is the
// engine behind every AsXxx helper, so users never type group tags.
//
// ctor is either a value that conv accepts as it is, or a function whose
// parameters Fx injects (fx.In structs included) and whose results are one
// value and an optional error; conv turns that value into a T. A function of
// the wrong shape is an error from fx.New, and a value conv refuses is an
// error when the group is built: a wrong type is never silently dropped.
// what names the helper in errors, e.g. `fxhttp.AsRoute("GET /x")`; errors
// about a constructor name it by its function name too.
//
// The constructor itself is what Fx provides (under a name private to the
// registration), so Fx's errors, fx.DotGraph and the dashboard's graph show
// the user's function; a small converter next to it turns the value into a
// T for the group.
func Group[T any](group, what string, ctor any, conv func(v any) (T, error)) fx.Option {
	if ctor == nil {
		return fx.Error(fmt.Errorf("%s: constructor is nil", what))
	}
	tag := fmt.Sprintf(`group:"%s"`, group)
	v, convErr := conv(ctor)
	if convErr == nil {
		return fx.Provide(fx.Annotated{Group: group, Target: func() T { return v }})
	}
	ft := reflect.TypeOf(ctor)
	if ft.Kind() != reflect.Func {
		return fx.Error(fmt.Errorf("%s: %w", what, convErr))
	}
	name := funcName(ctor)
	switch {
	case ft.IsVariadic():
		return fx.Error(fmt.Errorf("%s: %s: constructor %s must not be variadic", what, name, ft))
	case ft.NumOut() == 1 && ft.Out(0) != errorType, ft.NumOut() == 2 && ft.Out(1) == errorType:
	default:
		return fx.Error(fmt.Errorf("%s: %s: %w, or a constructor that returns one (and optionally an error)", what, name, convErr))
	}
	key := fmt.Sprintf("%s#%d", group, groupSeq.Add(1))
	convert := func(v any) (T, error) {
		t, err := conv(v)
		if err != nil {
			return t, fmt.Errorf("%s: %s: constructor %s: %w", what, name, ft, err)
		}
		return t, nil
	}
	return fx.Options(
		// fx.Annotated hands the function to Fx as it is; fx.Annotate would
		// wrap it in a reflect.MakeFunc stub that errors and graphs name.
		fx.Provide(fx.Annotated{Name: key, Target: ctor}),
		fx.Provide(fx.Annotate(convert,
			fx.ParamTags(fmt.Sprintf(`name:"%s"`, key)),
			fx.From(reflect.New(ft.Out(0)).Interface()),
			fx.ResultTags(tag))),
	)
}

// funcName is a function's name for messages: package and function,
// without the import path ("orders.NewHandler", "main.main.func1").
func funcName(fn any) string {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Func || v.IsNil() {
		return fmt.Sprintf("%T", fn)
	}
	f := runtime.FuncForPC(v.Pointer())
	if f == nil {
		return v.Type().String()
	}
	name := f.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return name
}
