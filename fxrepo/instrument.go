package fxrepo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
	"gorm.io/plugin/opentelemetry/tracing"
)

// queryMetrics observes marty_db_query_duration_seconds{operation,table}
// through GORM callbacks around each operation.
type queryMetrics struct {
	hist *prometheus.HistogramVec
}

type startKey struct{}

func newQueryMetrics(reg prometheus.Registerer) (*queryMetrics, error) {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "marty_db_query_duration_seconds",
		Help:    "Duration of database operations made through GORM, by operation (create, query, update, delete, row, raw) and table.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"operation", "table"})
	if err := reg.Register(h); err != nil {
		return nil, fmt.Errorf("fxrepo: register marty_db_query_duration_seconds: %w", err)
	}
	return &queryMetrics{hist: h}, nil
}

func (m *queryMetrics) Name() string { return "martyfx:metrics" }

func (m *queryMetrics) Initialize(db *gorm.DB) error {
	before := func(tx *gorm.DB) { tx.Statement.Settings.Store(startKey{}, time.Now()) }
	after := func(op string) func(*gorm.DB) {
		return func(tx *gorm.DB) {
			v, ok := tx.Statement.Settings.LoadAndDelete(startKey{})
			if !ok {
				return
			}
			table := tx.Statement.Table
			if table == "" {
				table = "unknown"
			}
			m.hist.WithLabelValues(op, table).Observe(time.Since(v.(time.Time)).Seconds())
		}
	}
	cb := db.Callback()
	regs := []struct {
		op     string
		before func(string, func(*gorm.DB)) error
		after  func(string, func(*gorm.DB)) error
	}{
		{"create", cb.Create().Before("gorm:create").Register, cb.Create().After("gorm:create").Register},
		{"query", cb.Query().Before("gorm:query").Register, cb.Query().After("gorm:query").Register},
		{"update", cb.Update().Before("gorm:update").Register, cb.Update().After("gorm:update").Register},
		{"delete", cb.Delete().Before("gorm:delete").Register, cb.Delete().After("gorm:delete").Register},
		{"row", cb.Row().Before("gorm:row").Register, cb.Row().After("gorm:row").Register},
		{"raw", cb.Raw().Before("gorm:raw").Register, cb.Raw().After("gorm:raw").Register},
	}
	for _, r := range regs {
		if err := r.before("martyfx:before_"+r.op, before); err != nil {
			return err
		}
		if err := r.after("martyfx:after_"+r.op, after(r.op)); err != nil {
			return err
		}
	}
	return nil
}

// tracingPlugin is the GORM OpenTelemetry plugin: one client span per
// statement with db.system.name, db.query.text (no bound values unless
// asked), db.operation.name and db.collection.name.
func tracingPlugin(tp trace.TracerProvider, values bool) gorm.Plugin {
	opts := []tracing.Option{tracing.WithTracerProvider(tp), tracing.WithoutMetrics()}
	if !values {
		opts = append(opts, tracing.WithoutQueryVariables())
	}
	return tracing.NewPlugin(opts...)
}

// zapLogger routes GORM's log to zap: statement errors at error (expected
// ones, a missing row or a unique violation, at debug), statements slower
// than the threshold at warn, every statement at debug. Entries carry
// trace_id and span_id. Bound values are left out unless asked for.
type zapLogger struct {
	log    *zap.Logger
	slow   time.Duration
	values bool
}

func newZapLogger(log *zap.Logger, slow time.Duration, values bool) *zapLogger {
	return &zapLogger{log: log.Named("db").WithOptions(zap.AddCallerSkip(3)), slow: slow, values: values}
}

// LogMode is part of GORM's logger interface; the zap logger's level rules.
func (l *zapLogger) LogMode(gormlogger.LogLevel) gormlogger.Interface { return l }

func (l *zapLogger) Info(ctx context.Context, msg string, args ...any) {
	l.log.Info(fmt.Sprintf(msg, args...), traceFields(ctx)...)
}

func (l *zapLogger) Warn(ctx context.Context, msg string, args ...any) {
	l.log.Warn(fmt.Sprintf(msg, args...), traceFields(ctx)...)
}

func (l *zapLogger) Error(ctx context.Context, msg string, args ...any) {
	l.log.Error(fmt.Sprintf(msg, args...), traceFields(ctx)...)
}

// ParamsFilter keeps bound values out of logged SQL unless asked for.
func (l *zapLogger) ParamsFilter(_ context.Context, sql string, params ...any) (string, []any) {
	if l.values {
		return sql, params
	}
	return sql, nil
}

func (l *zapLogger) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	elapsed := time.Since(begin)
	level := zapcore.DebugLevel
	msg := "query"
	switch {
	case err != nil && !expected(err):
		level, msg = zapcore.ErrorLevel, "query failed"
	case l.slow > 0 && elapsed > l.slow:
		level, msg = zapcore.WarnLevel, "slow query"
	}
	ce := l.log.Check(level, msg)
	if ce == nil {
		return
	}
	sql, rows := fc()
	fields := append(traceFields(ctx), zap.String("sql", sql), zap.Int64("rows", rows), zap.Duration("elapsed", elapsed))
	if level == zapcore.WarnLevel {
		fields = append(fields, zap.Duration("threshold", l.slow))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	ce.Write(fields...)
}

// expected errors are part of normal flow, mapped by the repository.
func expected(err error) bool {
	return errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, context.Canceled) ||
		IsUniqueViolation(err) || IsRetryable(err)
}

func traceFields(ctx context.Context) []zap.Field {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []zap.Field{zap.String("trace_id", sc.TraceID().String()), zap.String("span_id", sc.SpanID().String())}
}
