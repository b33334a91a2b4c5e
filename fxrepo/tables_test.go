package fxrepo_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

// widgetsMigrations creates the widgets table as a service would ship it.
var widgetsMigrations = fstest.MapFS{
	"sqlite/00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, color TEXT NOT NULL DEFAULT '',
  version INTEGER, created_at DATETIME, updated_at DATETIME, deleted_at DATETIME);
`)},
	"postgres/00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, color TEXT NOT NULL DEFAULT '',
  version BIGINT, created_at TIMESTAMPTZ, updated_at TIMESTAMPTZ, deleted_at TIMESTAMPTZ);
`)},
}

// production is the environment where auto-migration is off by default.
func production(b backend) []string { return append([]string{"MARTY_ENV=production"}, b.env...) }

func TestMissingTableFailsStart(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		t.Parallel()
		ctx := context.Background()

		// What the README teaches, in production: a model, no migration.
		app := newApp(t, production(b), fxrepo.AsModel(&Widget{}))
		err := app.Start(ctx)
		require.EqualError(t, err, `fxrepo: table "widgets" (model *fxrepo_test.Widget) does not exist: `+
			`create it with a goose migration (fxrepo.AsMigrations), or set MARTY_DB_AUTO_MIGRATE=true outside production`)
		require.NoError(t, app.Stop(ctx))

		// Every missing table is named, once even if registered twice.
		app = newApp(t, production(b), fxrepo.AsModel(&Widget{}, &Note{}, &Widget{}))
		require.ErrorContains(t, app.Start(ctx),
			`fxrepo: tables "notes" (model *fxrepo_test.Note), "widgets" (model *fxrepo_test.Widget) do not exist: create them`)
		require.NoError(t, app.Stop(ctx))

		// A migration that creates it: the start succeeds, and the
		// repository writes.
		var db *gorm.DB
		startApp(t, production(b), fxrepo.AsModel(&Widget{}), fxrepo.AsMigrations("widgets", widgetsMigrations), fx.Populate(&db))
		require.NoError(t, fxrepo.NewRepository[Widget, int64](db).Create(ctx, &Widget{Name: "w"}))
		require.False(t, db.Migrator().HasTable(&Note{}), "not auto-migrated in production")
	})
}

func TestMissingTableFailsReadinessWhenAsked(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		t.Parallel()
		var checks []fxmonitor.Check
		var db *gorm.DB
		startApp(t, append(production(b), "MARTY_DB_TABLE_CHECK=readiness"), fxrepo.AsModel(&Widget{}), fx.Populate(&db),
			fx.Invoke(fx.Annotate(func(cs []fxmonitor.Check) { checks = cs }, fx.ParamTags(`group:"martyfx.monitor.checks"`))))
		require.Len(t, checks, 1)
		ctx := context.Background()
		err := checks[0].Func(ctx)
		require.ErrorContains(t, err, `fxrepo: table "widgets" (model *fxrepo_test.Widget) does not exist`)

		// The table appears (a migration job ran): ready.
		require.NoError(t, db.Migrator().CreateTable(&Widget{}))
		require.NoError(t, checks[0].Func(ctx))
		require.NoError(t, checks[0].Func(ctx))
	})
}

func TestTableCheckOffAndAutoMigrate(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		t.Parallel()
		var db *gorm.DB
		startApp(t, append(production(b), "MARTY_DB_TABLE_CHECK=off"), fxrepo.AsModel(&Widget{}), fx.Populate(&db))
		require.False(t, db.Migrator().HasTable(&Widget{}), "off: the start does not look")

		startApp(t, append(production(b), "MARTY_DB_AUTO_MIGRATE=true"), fxrepo.AsModel(&Note{}), fx.Populate(&db))
		require.True(t, db.Migrator().HasTable(&Note{}), "auto-migration creates it, nothing to report")
	})
}

func TestTableCheckWithoutFx(t *testing.T) {
	t.Parallel()
	cfg := fxrepo.DefaultConfig()
	cfg.DSN, cfg.AutoMigrate = ":memory:", false
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{Models: []any{&Note{}}})
	require.NoError(t, err)
	require.ErrorContains(t, d.Start(context.Background()), `fxrepo: table "notes" (model *fxrepo_test.Note) does not exist`)

	cfg.TableCheck = "sometimes"
	_, err = fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{})
	require.ErrorContains(t, err, `fxrepo: invalid config: `)
	require.ErrorContains(t, err, `"sometimes": want one of "start", "readiness", "off"`)
}
