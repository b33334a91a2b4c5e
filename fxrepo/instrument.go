package fxrepo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	gormlogger "gorm.io/gorm/logger"
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
	before := func(string) func(*gorm.DB) {
		return func(tx *gorm.DB) { tx.Statement.Settings.Store(startKey{}, time.Now()) }
	}
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
	return aroundStatements(db, "metrics", before, after)
}

// aroundStatements registers before(op) ahead of and after(op) behind each
// of GORM's statement callbacks (op is create, query, update, delete, row
// or raw), named "martyfx:<plugin>:before_<op>" and "...:after_<op>".
func aroundStatements(db *gorm.DB, plugin string, before, after func(op string) func(*gorm.DB)) error {
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
	prefix := "martyfx:" + plugin + ":"
	for _, r := range regs {
		if err := r.before(prefix+"before_"+r.op, before(r.op)); err != nil {
			return fmt.Errorf("fxrepo: register %sbefore_%s: %w", prefix, r.op, err)
		}
		if err := r.after(prefix+"after_"+r.op, after(r.op)); err != nil {
			return fmt.Errorf("fxrepo: register %safter_%s: %w", prefix, r.op, err)
		}
	}
	return nil
}

// instrumentationName is the tracer scope of the statement spans.
const instrumentationName = "github.com/martyfx/martyfx/fxrepo"

// dbRowsAffected is the rows a statement affected or returned (GORM's
// RowsAffected), under the name gorm.io/plugin/opentelemetry used.
const dbRowsAffected = attribute.Key("db.rows_affected")

// tracingPlugin makes one client span per statement, following the OTel
// database conventions: named "<operation> <table>" (db.query.summary), else
// the operation, with db.system.name, server.address and server.port
// (PostgreSQL), db.query.text (placeholders; the bound values only when
// values is set), db.operation.name (the statement's first keyword, lower
// case), db.collection.name, db.rows_affected, and on failure an error
// status, the recorded error and error.type (the SQLSTATE on PostgreSQL,
// also in db.response.status_code). A missing row is not a failure.
func tracingPlugin(tp trace.TracerProvider, values bool) gorm.Plugin {
	return &statementTracer{tracer: tp.Tracer(instrumentationName), values: values}
}

type statementTracer struct {
	tracer trace.Tracer
	values bool
	system attribute.KeyValue
	name   string                  // the span's name until the SQL is known
	start  []trace.SpanStartOption // kind and the attributes known at open
}

// spanContext is the statement's context while it runs: the span in it,
// and the caller's context to put back afterwards (a reused chain shares
// its Statement, and the next statement's span must not nest in this one).
type spanContext struct {
	context.Context
	parent context.Context
	span   trace.Span
}

func (p *statementTracer) Name() string { return "martyfx:tracing" }

func (p *statementTracer) Initialize(db *gorm.DB) error {
	attrs := make([]attribute.KeyValue, 0, 3)
	switch db.Name() {
	case "postgres":
		p.system = semconv.DBSystemNamePostgreSQL
		attrs = append(attrs, p.system)
		attrs = append(attrs, postgresServer(db.Dialector)...)
	case "sqlite":
		p.system = semconv.DBSystemNameSQLite
		attrs = append(attrs, p.system)
	default:
		p.system = semconv.DBSystemNameKey.String(db.Name())
		attrs = append(attrs, p.system)
	}
	p.name = p.system.Value.AsString()
	p.start = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...)}
	return aroundStatements(db, "tracing", p.before, p.after)
}

// postgresServer is server.address and server.port of the DSN's first
// host (no user, password or database name).
func postgresServer(d gorm.Dialector) []attribute.KeyValue {
	var dsn string
	switch d := d.(type) {
	case *postgres.Dialector:
		dsn = d.DSN
	case postgres.Dialector:
		dsn = d.DSN
	}
	if dsn == "" {
		return nil
	}
	pc, err := pgconn.ParseConfig(dsn)
	if err != nil || pc.Host == "" {
		return nil
	}
	out := []attribute.KeyValue{semconv.ServerAddress(pc.Host)}
	if !strings.HasPrefix(pc.Host, "/") && pc.Port != 0 {
		out = append(out, semconv.ServerPort(int(pc.Port)))
	}
	return out
}

func (p *statementTracer) before(string) func(*gorm.DB) {
	return func(tx *gorm.DB) {
		parent := tx.Statement.Context
		if parent == nil {
			parent = context.Background()
		}
		// The name is final in after, once the SQL is built.
		ctx, span := p.tracer.Start(parent, p.name, p.start...)
		if !span.IsRecording() {
			return
		}
		tx.Statement.Context = &spanContext{Context: ctx, parent: parent, span: span}
	}
}

func (p *statementTracer) after(string) func(*gorm.DB) {
	return func(tx *gorm.DB) {
		c, ok := tx.Statement.Context.(*spanContext)
		if !ok {
			return
		}
		tx.Statement.Context = c.parent
		span := c.span
		stmt := tx.Statement

		query := stmt.SQL.String()
		op := operation(query)
		if p.values && len(stmt.Vars) > 0 {
			query = tx.Explain(query, stmt.Vars...)
		}
		attrs := make([]attribute.KeyValue, 0, 7)
		attrs = append(attrs, semconv.DBQueryText(query))
		if op != "" {
			attrs = append(attrs, semconv.DBOperationName(op))
		}
		switch {
		case stmt.Table != "" && op != "":
			summary := op + " " + stmt.Table
			attrs = append(attrs, semconv.DBCollectionName(stmt.Table), semconv.DBQuerySummary(summary))
			span.SetName(summary)
		case stmt.Table != "":
			attrs = append(attrs, semconv.DBCollectionName(stmt.Table))
			span.SetName(stmt.Table)
		case op != "":
			span.SetName(op)
		}
		if stmt.RowsAffected != -1 {
			attrs = append(attrs, dbRowsAffected.Int64(stmt.RowsAffected))
		}
		if err := tx.Error; err != nil && !normalEnd(err) {
			var pg *pgconn.PgError
			if errors.As(err, &pg) && pg.Code != "" {
				attrs = append(attrs, semconv.DBResponseStatusCode(pg.Code), semconv.ErrorTypeKey.String(pg.Code))
			} else {
				attrs = append(attrs, semconv.ErrorType(err))
			}
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.SetAttributes(attrs...)
		span.End()
	}
}

// normalEnd reports the errors that end a statement without failing it.
func normalEnd(err error) bool {
	return errors.Is(err, gorm.ErrRecordNotFound) || errors.Is(err, sql.ErrNoRows) ||
		errors.Is(err, driver.ErrSkip) || errors.Is(err, io.EOF)
}

// operation is the first keyword of query in lower case, after blanks,
// semicolons and comments: "select", "insert", "with", ...
func operation(query string) string {
	i := 0
	for i < len(query) {
		switch c := query[i]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ';' || c == '(':
			i++
		case strings.HasPrefix(query[i:], "--"):
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				return ""
			}
			i += end + 1
		case strings.HasPrefix(query[i:], "/*"):
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				return ""
			}
			i += 2 + end + 2
		default:
			j := i
			for j < len(query) && isWordByte(query[j]) {
				j++
			}
			return lowerKeyword(query[i:j])
		}
	}
	return ""
}

func isWordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// keywords are the usual first keywords, returned without allocating.
var keywords = []string{"select", "insert", "update", "delete", "with", "create", "alter", "drop",
	"begin", "commit", "rollback", "savepoint", "release", "set", "show", "pragma", "explain",
	"truncate", "lock", "listen", "notify", "unlisten", "values", "call", "do", "copy", "analyze", "vacuum"}

func lowerKeyword(w string) string {
	for _, k := range keywords {
		if strings.EqualFold(w, k) {
			return k
		}
	}
	return strings.ToLower(w)
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
