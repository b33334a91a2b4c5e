package fxcore

import (
	"fmt"
	"reflect"

	"go.uber.org/fx"
)

var errorType = reflect.TypeOf((*error)(nil)).Elem()

// Group provides into the value group `group` a T built from ctor. It is the
// engine behind every AsXxx helper, so users never type group tags.
//
// ctor is either a value that conv accepts as it is, or a function whose
// parameters Fx injects (fx.In structs included) and whose results are one
// value and an optional error; conv turns that value into a T. A function of
// the wrong shape is an error from fx.New, and a value conv refuses is an
// error when the group is built: a wrong type is never silently dropped.
// what names the helper in errors, e.g. `fxhttp.AsRoute("GET /x")`.
func Group[T any](group, what string, ctor any, conv func(v any) (T, error)) fx.Option {
	if ctor == nil {
		return fx.Error(fmt.Errorf("%s: constructor is nil", what))
	}
	tag := fmt.Sprintf(`group:"%s"`, group)
	if v, err := conv(ctor); err == nil {
		return fx.Provide(fx.Annotate(func() T { return v }, fx.ResultTags(tag)))
	}
	ft := reflect.TypeOf(ctor)
	if ft.Kind() != reflect.Func {
		_, err := conv(ctor)
		return fx.Error(fmt.Errorf("%s: %w", what, err))
	}
	if ft.IsVariadic() {
		return fx.Error(fmt.Errorf("%s: constructor %s must not be variadic", what, ft))
	}
	switch {
	case ft.NumOut() == 1 && ft.Out(0) != errorType:
	case ft.NumOut() == 2 && ft.Out(1) == errorType:
	default:
		return fx.Error(fmt.Errorf("%s: constructor %s must return a value and optionally an error", what, ft))
	}
	in := make([]reflect.Type, ft.NumIn())
	for i := range in {
		in[i] = ft.In(i)
	}
	outT := reflect.TypeOf((*T)(nil)).Elem()
	wrapperT := reflect.FuncOf(in, []reflect.Type{outT, errorType}, false)
	fn := reflect.ValueOf(ctor)
	wrapper := reflect.MakeFunc(wrapperT, func(args []reflect.Value) []reflect.Value {
		res := fn.Call(args)
		var out T
		if len(res) == 2 && !res[1].IsNil() {
			return []reflect.Value{reflect.ValueOf(&out).Elem(), res[1]}
		}
		v, err := conv(res[0].Interface())
		if err != nil {
			err = fmt.Errorf("%s: constructor %s: %w", what, ft, err)
			return []reflect.Value{reflect.ValueOf(&out).Elem(), reflect.ValueOf(&err).Elem()}
		}
		return []reflect.Value{reflect.ValueOf(&v).Elem(), reflect.Zero(errorType)}
	})
	return fx.Provide(fx.Annotate(wrapper.Interface(), fx.ResultTags(tag)))
}
