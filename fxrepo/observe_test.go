package fxrepo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

func TestSpansHaveDBAttributes(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		f := newFixture(t, b, fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))))

		ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
		w := &Widget{Name: "secret-value-42"}
		require.NoError(t, f.widgets.Create(ctx, w))
		_, err := f.widgets.Get(ctx, w.ID)
		require.NoError(t, err)
		parent.End()

		system := map[string]string{"sqlite": "sqlite", "postgres": "postgresql"}[b.driver]
		var insert, sel sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Parent().SpanID() != parent.SpanContext().SpanID() {
				continue
			}
			attrs := attrMap(s.Attributes())
			switch attrs["db.operation.name"] {
			case "insert":
				insert = s
			case "select":
				sel = s
			}
		}
		require.NotNil(t, insert, "an insert span under the request span")
		require.NotNil(t, sel, "a select span under the request span")
		for _, s := range []sdktrace.ReadOnlySpan{insert, sel} {
			attrs := attrMap(s.Attributes())
			require.Equal(t, trace.SpanKindClient, s.SpanKind())
			require.Equal(t, system, attrs["db.system.name"])
			require.Equal(t, "widgets", attrs["db.collection.name"])
			require.NotEmpty(t, attrs["db.query.text"])
			require.NotContains(t, attrs["db.query.text"], "secret-value-42", "bound values stay out of spans")
		}
		require.Equal(t, "insert widgets", insert.Name())

		// A failing statement marks its span as an error.
		require.Error(t, f.db.WithContext(ctx).Exec("SELECT * FROM no_such_table").Error)
		var failed bool
		for _, s := range rec.Ended() {
			if strings.Contains(attrMap(s.Attributes())["db.query.text"], "no_such_table") {
				failed = s.Status().Code.String() == "Error"
			}
		}
		require.True(t, failed)
	})
}

func TestQueryValuesOptIn(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newFixture(t, backend{env: []string{"MARTY_DB_DSN=:memory:", "MARTY_DB_QUERY_VALUES=true"}},
		fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))))
	require.NoError(t, f.widgets.Create(context.Background(), &Widget{Name: "visible-value"}))
	var found bool
	for _, s := range rec.Ended() {
		found = found || strings.Contains(attrMap(s.Attributes())["db.query.text"], "visible-value")
	}
	require.True(t, found, "MARTY_DB_QUERY_VALUES=true puts values in spans")
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		var gath prometheus.Gatherer
		f := newFixture(t, b, fx.Populate(&gath))
		ctx := context.Background()
		w := &Widget{Name: "m"}
		require.NoError(t, f.widgets.Create(ctx, w))
		for range 3 {
			_, err := f.widgets.Get(ctx, w.ID)
			require.NoError(t, err)
		}
		require.NoError(t, f.widgets.Update(ctx, w))
		require.NoError(t, f.widgets.Delete(ctx, w.ID))

		mfs, err := gath.Gather()
		require.NoError(t, err)
		byName := map[string]*dto.MetricFamily{}
		for _, mf := range mfs {
			byName[mf.GetName()] = mf
		}
		hist := byName["marty_db_query_duration_seconds"]
		require.NotNil(t, hist)
		counts := map[string]uint64{}
		for _, m := range hist.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["table"] == "widgets" {
				counts[labels["operation"]] += m.GetHistogram().GetSampleCount()
			}
		}
		require.EqualValues(t, 1, counts["create"])
		require.GreaterOrEqual(t, counts["query"], uint64(3))
		require.GreaterOrEqual(t, counts["update"], uint64(1), "updates (and the soft delete)")

		// Pool metrics from collectors.NewDBStatsCollector.
		for _, name := range []string{"go_sql_open_connections", "go_sql_max_open_connections", "go_sql_wait_count_total", "go_sql_idle_connections"} {
			require.Contains(t, byName, name)
		}
		maxOpen := byName["go_sql_max_open_connections"].GetMetric()[0]
		require.EqualValues(t, 10, maxOpen.GetGauge().GetValue())
		require.Equal(t, "db_name", maxOpen.GetLabel()[0].GetName())
		require.NotEmpty(t, maxOpen.GetLabel()[0].GetValue())
	})
}

func TestLogs(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		core, logs := observer.New(zapcore.InfoLevel)
		env := append(append([]string{}, b.env...), "MARTY_DB_SLOW_QUERY_THRESHOLD=40ms")
		var db *gorm.DB
		startApp(t, env, fx.Decorate(func() *zap.Logger { return zap.New(core) }), fx.Populate(&db))
		tp := sdktrace.NewTracerProvider()
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		ctx, span := tp.Tracer("test").Start(context.Background(), "request")
		defer span.End()

		// A fast query is not logged at info and above.
		logs.TakeAll()
		require.NoError(t, db.WithContext(ctx).Exec("SELECT 1").Error)
		require.Zero(t, logs.Len())

		// A slow query is logged at warn, with the trace id, without values.
		slowSQL := map[string]string{
			"postgres": "SELECT pg_sleep(0.08), ? AS secret",
			// A recursive count that takes well over 40ms.
			"sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 300000) SELECT count(*), ? AS secret FROM c",
		}[b.driver]
		require.NoError(t, db.WithContext(ctx).Exec(slowSQL, "hunter2").Error)
		slow := logs.FilterMessage("slow query").All()
		require.Len(t, slow, 1)
		entry := slow[0]
		require.Equal(t, zapcore.WarnLevel, entry.Level)
		fields := entry.ContextMap()
		require.Equal(t, span.SpanContext().TraceID().String(), fields["trace_id"])
		require.Contains(t, fields["sql"], "AS secret")
		require.NotContains(t, fields["sql"], "hunter2", "bound values stay out of logs")
		require.GreaterOrEqual(t, fields["elapsed"], 40*time.Millisecond)
		require.Equal(t, "db", entry.LoggerName)

		// A failing statement is logged at error; expected ones are not.
		require.Error(t, db.WithContext(ctx).Exec("SELECT * FROM no_such_table").Error)
		failed := logs.FilterMessage("query failed").All()
		require.Len(t, failed, 1)
		require.Equal(t, zapcore.ErrorLevel, failed[0].Level)
		logs.TakeAll()
		repo := fxrepo.NewRepository[Note, string](db)
		require.NoError(t, db.AutoMigrate(&Note{}))
		_, err := repo.Get(ctx, "missing")
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
		require.NoError(t, repo.Create(ctx, &Note{ID: "a"}))
		require.ErrorIs(t, repo.Create(ctx, &Note{ID: "a"}), fxrepo.ErrConflict)
		require.Empty(t, logs.FilterLevelExact(zapcore.ErrorLevel).All(), "not found and conflicts are not errors in the log")
	})
}

func TestReadinessCheck(t *testing.T) {
	t.Parallel()
	var checks []fxmonitor.Check
	app := newApp(t, []string{"MARTY_DB_DSN=:memory:"}, usesDB,
		fx.Invoke(fx.Annotate(func(cs []fxmonitor.Check) { checks = cs }, fx.ParamTags(`group:"martyfx.monitor.checks"`))))
	require.NoError(t, app.Start(context.Background()))
	require.Len(t, checks, 1)
	c := checks[0]
	require.Equal(t, "db", c.Name)
	require.True(t, c.Critical)
	require.Equal(t, fxmonitor.Readiness, c.Kinds)
	require.NoError(t, c.Func(context.Background()))
	require.NoError(t, app.Stop(context.Background()))
	require.ErrorContains(t, c.Func(context.Background()), "database is closed", "a closed pool fails the check")
}

func TestHTTPStatusMapping(t *testing.T) {
	t.Parallel()
	var srv *fxhttp.Server
	var repo *fxrepo.Repository[Widget, int64]
	startApp(t, []string{"MARTY_DB_DSN=:memory:", "MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0"},
		fxhttp.Module,
		fxrepo.AsModel(&Widget{}),
		fx.Provide(fxrepo.NewRepository[Widget, int64]),
		fxhttp.AsRoute("GET /widgets/{id}", func(r *fxrepo.Repository[Widget, int64]) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				var id int64
				_, _ = fmt.Sscan(req.PathValue("id"), &id)
				if _, err := r.Get(req.Context(), id); err != nil {
					fxhttp.WriteError(w, req, err)
					return
				}
				w.WriteHeader(http.StatusOK)
			})
		}),
		fxhttp.AsRoute("POST /conflict", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				// A sentinel wrapped by user code, not an *fxrepo.Error.
				fxhttp.WriteError(w, req, fmt.Errorf("orders: %w", fxrepo.ErrConflict))
			})
		}),
		fxhttp.AsRoute("POST /other", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				fxhttp.WriteError(w, req, errors.New("boom"))
			})
		}),
		fx.Populate(&srv, &repo))
	require.NoError(t, repo.Create(context.Background(), &Widget{Name: "x"}))
	get := func(method, path string) int {
		req, err := http.NewRequest(method, "http://"+srv.Addr()+path, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get("GET", "/widgets/1"))
	require.Equal(t, http.StatusNotFound, get("GET", "/widgets/999"))
	require.Equal(t, http.StatusConflict, get("POST", "/conflict"))
	require.Equal(t, http.StatusInternalServerError, get("POST", "/other"))
	http.DefaultClient.CloseIdleConnections()
}
