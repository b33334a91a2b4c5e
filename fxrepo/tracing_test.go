package fxrepo_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxrepo"
)

// recorded starts a fixture on b whose statement spans go to a recorder.
func recorded(t *testing.T, b backend, sampler sdktrace.Sampler) (*fixture, *tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sampler))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	f := newFixture(t, b, fx.Supply(fx.Annotate(tp, fx.As(new(trace.TracerProvider)))))
	rec.Reset() // the migration's statements
	return f, rec, tp.Tracer("test")
}

// childrenOf are the ended spans whose parent is parent.
func childrenOf(rec *tracetest.SpanRecorder, parent trace.Span) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == parent.SpanContext().SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func TestSpanNamesAndAttributes(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f, rec, tracer := recorded(t, b, sdktrace.AlwaysSample())
		ctx, parent := tracer.Start(context.Background(), "request")
		w := &Widget{Name: "w1"}
		require.NoError(t, f.widgets.Create(ctx, w))
		w.Color = "blue"
		require.NoError(t, f.widgets.Update(ctx, w))
		require.NoError(t, f.widgets.Delete(ctx, w.ID)) // soft delete: an UPDATE
		require.NoError(t, f.notes.Create(ctx, &Note{ID: "n1"}))
		require.NoError(t, f.notes.Delete(ctx, "n1"))
		require.NoError(t, f.db.WithContext(ctx).Exec("/* a comment */ SELECT 1").Error)
		parent.End()

		spans := childrenOf(rec, parent)
		var names []string
		for _, s := range spans {
			names = append(names, s.Name())
			attrs := attrMap(s.Attributes())
			require.Equal(t, trace.SpanKindClient, s.SpanKind(), s.Name())
			require.Equal(t, "github.com/martyfx/martyfx/fxrepo", s.InstrumentationScope().Name)
			require.Equal(t, codes.Unset, s.Status().Code, s.Name())
			if table := attrs["db.collection.name"]; table != "" {
				require.Equal(t, attrs["db.operation.name"]+" "+table, attrs["db.query.summary"])
				require.Equal(t, attrs["db.query.summary"], s.Name())
			}
			if b.driver == "postgres" {
				require.Equal(t, "127.0.0.1", attrs["server.address"])
				require.Equal(t, "5432", attrs["server.port"])
			} else {
				require.NotContains(t, attrs, "server.address", "SQLite has no server")
			}
		}
		require.Equal(t, []string{"insert widgets", "update widgets", "update widgets", "insert notes", "delete notes", "select"}, names)

		// Rows affected: the update touched one row.
		require.Equal(t, "1", attrMap(spans[1].Attributes())["db.rows_affected"])
		// A raw statement without a table: the operation, after the comment.
		raw := attrMap(spans[5].Attributes())
		require.Equal(t, "select", raw["db.operation.name"])
		require.NotContains(t, raw, "db.collection.name")
		require.Equal(t, "/* a comment */ SELECT 1", raw["db.query.text"])
	})
}

func TestSpanError(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f, rec, tracer := recorded(t, b, sdktrace.AlwaysSample())
		ctx, parent := tracer.Start(context.Background(), "request")
		require.Error(t, f.db.WithContext(ctx).Exec("SELECT * FROM no_such_table WHERE id = ?", 7).Error)
		_, err := f.widgets.Get(ctx, 12345)
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
		parent.End()

		spans := childrenOf(rec, parent)
		require.Len(t, spans, 2)
		failed, missing := spans[0], spans[1]

		require.Equal(t, codes.Error, failed.Status().Code)
		require.Contains(t, failed.Status().Description, "no_such_table")
		require.Len(t, failed.Events(), 1, "the error is recorded as an exception event")
		require.Equal(t, "exception", failed.Events()[0].Name)
		attrs := attrMap(failed.Attributes())
		require.NotEmpty(t, attrs["error.type"])
		if b.driver == "postgres" {
			require.Equal(t, "42P01", attrs["db.response.status_code"], "the SQLSTATE")
			require.Equal(t, "42P01", attrs["error.type"])
		}
		require.NotContains(t, attrs["db.query.text"], "7", "no bound value")

		// A missing row is normal flow, not a failed statement.
		require.Equal(t, codes.Unset, missing.Status().Code)
		require.Empty(t, missing.Events())
		require.NotContains(t, attrMap(missing.Attributes()), "error.type")
	})
}

func TestSpanQueryTextWithoutValues(t *testing.T) {
	t.Parallel()
	for _, values := range []bool{false, true} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		cfg := fxrepo.DefaultConfig()
		cfg.DSN = "file:" + filepath.Join(t.TempDir(), "v.db")
		cfg.QueryValues = values
		db := openDB(t, cfg, fxrepo.DatabaseOptions{TracerProvider: tp, Models: []any{&Widget{}}})
		rec.Reset()

		ctx := context.Background()
		require.NoError(t, db.WithContext(ctx).Create(&Widget{Name: "name-secret-1"}).Error)
		var got []Widget
		require.NoError(t, db.WithContext(ctx).Where("name = ?", "name-secret-2").Find(&got).Error)
		var n int
		require.NoError(t, db.WithContext(ctx).Raw("SELECT count(*) FROM widgets WHERE color <> ?", "color-secret-3").Scan(&n).Error)
		require.NoError(t, db.WithContext(ctx).Exec("UPDATE widgets SET color = ? WHERE name = ?", "color-secret-4", "name-secret-1").Error)

		var texts []string
		for _, s := range rec.Ended() {
			texts = append(texts, attrMap(s.Attributes())["db.query.text"])
		}
		require.Len(t, texts, 4)
		all := strings.Join(texts, "\n")
		for i, secret := range []string{"name-secret-1", "name-secret-2", "color-secret-3", "color-secret-4"} {
			if values {
				require.Contains(t, texts[i], secret, "MARTY_DB_QUERY_VALUES=true puts values in spans")
			} else {
				require.NotContains(t, all, secret, "bound values stay out of spans by default")
				require.Contains(t, texts[i], "?", "the placeholder is kept")
			}
		}
	}
}

// A *gorm.DB chain reused for a second statement shares its Statement: the
// second span is a sibling of the first, not its child.
func TestSpanParentRestored(t *testing.T) {
	t.Parallel()
	f, rec, tracer := recorded(t, backend{driver: "sqlite", env: []string{"MARTY_DB_DSN=:memory:"}}, sdktrace.AlwaysSample())
	ctx, parent := tracer.Start(context.Background(), "request")
	q := f.db.WithContext(ctx).Model(&Widget{}).Where("id > ?", 0)
	var n int64
	require.NoError(t, q.Count(&n).Error)
	var ws []Widget
	require.NoError(t, q.Find(&ws).Error)
	parent.End()
	require.Len(t, childrenOf(rec, parent), 2)
	require.Len(t, rec.Ended(), 3)
}

// Unsampled statements make no span and run as usual.
func TestSpanNotSampled(t *testing.T) {
	t.Parallel()
	f, rec, tracer := recorded(t, backend{driver: "sqlite", env: []string{"MARTY_DB_DSN=:memory:"}}, sdktrace.NeverSample())
	ctx, parent := tracer.Start(context.Background(), "request")
	w := &Widget{Name: "quiet"}
	require.NoError(t, f.widgets.Create(ctx, w))
	got, err := f.widgets.Get(ctx, w.ID)
	require.NoError(t, err)
	require.Equal(t, "quiet", got.Name)
	parent.End()
	require.Empty(t, rec.Ended())
}

// BenchmarkSpanGet is Repository.Get on in-memory SQLite with every
// statement sampled: the cost of the statement span.
func BenchmarkSpanGet(b *testing.B) {
	for _, sampled := range []bool{true, false} {
		name := map[bool]string{true: "sampled", false: "unsampled"}[sampled]
		b.Run(name, func(b *testing.B) {
			sampler := sdktrace.NeverSample()
			if sampled {
				sampler = sdktrace.AlwaysSample()
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithSpanProcessor(dropSpans{}))
			b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			cfg := fxrepo.DefaultConfig()
			cfg.DSN = ":memory:"
			db := openDB(b, cfg, fxrepo.DatabaseOptions{TracerProvider: tp, Models: []any{&Widget{}}})
			repo := fxrepo.NewRepository[Widget, int64](db)
			ctx := context.Background()
			w := &Widget{Name: "bench"}
			require.NoError(b, repo.Create(ctx, w))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := repo.Get(ctx, w.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// dropSpans is a span processor that keeps nothing.
type dropSpans struct{}

func (dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropSpans) Shutdown(context.Context) error                  { return nil }
func (dropSpans) ForceFlush(context.Context) error                { return nil }
