package fxrepo

import (
	"database/sql"
	"reflect"
	"time"

	"gorm.io/gorm"
)

// timePrecision is what PostgreSQL stores of a timestamp.
const timePrecision = time.Microsecond

// truncateTimes is a GORM callback run before each create and update: it
// truncates the time values of the statement to microseconds, in the
// caller's struct (or map) itself. PostgreSQL keeps microseconds, so a
// service that answers with the struct it just wrote would show
// nanoseconds that a read of the same row no longer has; after this, the
// written struct and every later read agree, on both drivers.
func truncateTimes(db *gorm.DB) {
	st := db.Statement
	if db.Error != nil || st == nil {
		return
	}
	if m, ok := st.Dest.(map[string]any); ok {
		for k, v := range m {
			if t, ok := truncated(v); ok {
				m[k] = t
			}
		}
		return
	}
	if st.Schema == nil {
		return
	}
	truncateValue(db, st.ReflectValue)
	// Model(&a).Updates(&b): the values written come from b.
	dv := reflect.ValueOf(st.Dest)
	if dv.Kind() != reflect.Pointer || dv.IsNil() || dv.Elem().Type() != st.ReflectValue.Type() {
		return
	}
	if st.ReflectValue.CanAddr() && st.ReflectValue.Addr().Pointer() == dv.Pointer() {
		return // Dest is the model, done above
	}
	truncateValue(db, dv.Elem())
}

// truncateValue truncates the time fields of a struct, or of each struct
// in a slice or array.
func truncateValue(db *gorm.DB, rv reflect.Value) {
	rv = reflect.Indirect(rv)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			truncateValue(db, rv.Index(i))
		}
	case reflect.Struct:
		if !rv.CanAddr() {
			return
		}
		ctx := db.Statement.Context
		for _, f := range db.Statement.Schema.Fields {
			if f.FieldType != timeType && f.FieldType != timePtrType && f.FieldType != nullTimeType {
				continue
			}
			v, zero := f.ValueOf(ctx, rv)
			if zero {
				continue
			}
			if t, ok := truncated(v); ok {
				_ = f.Set(ctx, rv, t)
			}
		}
	}
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	timePtrType  = reflect.TypeFor[*time.Time]()
	nullTimeType = reflect.TypeFor[sql.NullTime]()
)

// truncated returns v truncated to microseconds, and whether it is a time
// value with something to truncate.
func truncated(v any) (any, bool) {
	switch t := v.(type) {
	case time.Time:
		if t.Nanosecond()%int(timePrecision) != 0 {
			return t.Truncate(timePrecision), true
		}
	case *time.Time:
		if t != nil && t.Nanosecond()%int(timePrecision) != 0 {
			*t = t.Truncate(timePrecision)
		}
	case sql.NullTime:
		if t.Valid && t.Time.Nanosecond()%int(timePrecision) != 0 {
			return sql.NullTime{Time: t.Time.Truncate(timePrecision), Valid: true}, true
		}
	}
	return nil, false
}

// registerTimeTruncation runs truncateTimes before GORM writes.
func registerTimeTruncation(db *gorm.DB) error {
	cb := db.Callback()
	if err := cb.Create().Before("gorm:create").Register("martyfx:truncate_times", truncateTimes); err != nil {
		return err
	}
	return cb.Update().Before("gorm:update").Register("martyfx:truncate_times", truncateTimes)
}
