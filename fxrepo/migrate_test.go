package fxrepo_test

import (
	"context"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
)

// gadgetMigrations has driver-specific DDL in subdirectories.
var gadgetMigrations = fstest.MapFS{
	"sqlite/00001_gadgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE gadgets (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL);
INSERT INTO gadgets (name) VALUES ('seed');
-- +goose Down
DROP TABLE gadgets;
`)},
	"postgres/00001_gadgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE gadgets (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL);
INSERT INTO gadgets (name) VALUES ('seed');
-- +goose Down
DROP TABLE gadgets;
`)},
	"postgres/00002_gadgets_color.sql": {Data: []byte(`-- +goose Up
ALTER TABLE gadgets ADD COLUMN color TEXT NOT NULL DEFAULT 'pg';
`)},
	"sqlite/00002_gadgets_color.sql": {Data: []byte(`-- +goose Up
ALTER TABLE gadgets ADD COLUMN color TEXT NOT NULL DEFAULT 'sqlite';
`)},
}

// portable migrations at the root, same version numbers as gadgets: each
// set has its own version table so they do not collide.
var auditMigrations = fstest.MapFS{
	"00001_audit.sql": {Data: []byte(`-- +goose Up
CREATE TABLE audit_entries (id INTEGER PRIMARY KEY, what TEXT);
INSERT INTO audit_entries (id, what) VALUES (1, 'installed');
`)},
}

func TestMigrationsAppliedOnceAcrossRestarts(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		run := func() {
			var db *gorm.DB
			app := newApp(t, b.env,
				fxrepo.AsMigrations("gadgets", gadgetMigrations),
				fxrepo.AsMigrations("audit", auditMigrations),
				fxrepo.AsModel(&Widget{}),
				fx.Populate(&db))
			require.NoError(t, app.Start(ctx))
			var seeds, audits int64
			require.NoError(t, db.Table("gadgets").Where("name = ?", "seed").Count(&seeds).Error)
			require.NoError(t, db.Table("audit_entries").Count(&audits).Error)
			require.EqualValues(t, 1, seeds, "the seed row is inserted once")
			require.EqualValues(t, 1, audits)
			var color string
			require.NoError(t, db.Table("gadgets").Select("color").Take(&color).Error)
			require.Equal(t, map[string]string{"sqlite": "sqlite", "postgres": "pg"}[b.driver], color, "the driver's directory was used")
			var versions []int64
			require.NoError(t, db.Table("goose_gadgets").Where("version_id > 0").Order("version_id").Pluck("version_id", &versions).Error)
			require.Equal(t, []int64{1, 2}, versions)
			require.NoError(t, db.Table("goose_audit").Where("version_id > 0").Pluck("version_id", &versions).Error)
			require.Equal(t, []int64{1}, versions)
			require.True(t, db.Migrator().HasTable(&Widget{}), "models auto-migrated after the SQL migrations")
			require.NoError(t, app.Stop(ctx))
		}
		run()
		run()
	})
}

func TestMigrationFailures(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		bad := fstest.MapFS{"00001_bad.sql": {Data: []byte("-- +goose Up\nCREATE TABLE broken (;\n")}}
		app := newApp(t, b.env, fxrepo.AsMigrations("broken", bad))
		err := app.Start(context.Background())
		require.ErrorContains(t, err, `fxrepo: migrations "broken"`)
		require.ErrorContains(t, err, "00001_bad.sql")
		require.NoError(t, app.Stop(context.Background()))

		empty := fstest.MapFS{"README.md": {Data: []byte("nothing")}}
		app = newApp(t, b.env, fxrepo.AsMigrations("empty", empty))
		require.ErrorContains(t, app.Start(context.Background()), `fxrepo: migrations "empty": no migrations found`)

		app = newApp(t, b.env, fxrepo.AsMigrations("twice", auditMigrations), fxrepo.AsMigrations("twice", auditMigrations))
		require.ErrorContains(t, app.Start(context.Background()), `fxrepo: migrations "twice" registered twice`)

		// Migrations off: nothing applied (and the tables not checked).
		var db *gorm.DB
		app = newApp(t, append(b.env, "MARTY_DB_MIGRATE=false", "MARTY_DB_AUTO_MIGRATE=false", "MARTY_DB_TABLE_CHECK=off"),
			fxrepo.AsMigrations("audit", auditMigrations), fxrepo.AsModel(&Widget{}), fx.Populate(&db))
		require.NoError(t, app.Start(context.Background()))
		require.False(t, db.Migrator().HasTable("audit_entries"))
		require.False(t, db.Migrator().HasTable(&Widget{}))
		require.NoError(t, app.Stop(context.Background()))
	})
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	app := fx.New(fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Replace(source(t)), fxrepo.AsMigrations("Bad-Name", auditMigrations))
	require.ErrorContains(t, app.Err(), `fxrepo.AsMigrations("Bad-Name"): name must match`)
	app = fx.New(fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Replace(source(t)), fxrepo.AsMigrations("nil_fs", nil))
	require.ErrorContains(t, app.Err(), `fxrepo.AsMigrations("nil_fs"): nil fs.FS`)
	app = fx.New(fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Replace(source(t)), fxrepo.AsModel(Widget{}))
	require.ErrorContains(t, app.Err(), `fxrepo.AsModel(fxrepo_test.Widget): got fxrepo_test.Widget, want a pointer to a struct`)
}

func TestUnreachableDatabaseFailsStart(t *testing.T) {
	t.Parallel()
	port := closedPort(t)
	for name, dsn := range map[string]string{
		"url":       "postgres://app:s3cr3t-pw@" + port + "/orders?sslmode=disable&connect_timeout=1",
		"keyvalue":  "host=127.0.0.1 port=" + port[len("127.0.0.1:"):] + " user=app password=s3cr3t-pw dbname=orders sslmode=disable connect_timeout=1",
		"query-pwd": "postgres://app@" + port + "/orders?sslmode=disable&password=s3cr3t-pw",
	} {
		t.Run(name, func(t *testing.T) {
			app := newApp(t, []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + dsn, "MARTY_DB_CONNECT_BACKOFF=50ms", "MARTY_DB_CONNECT_BACKOFF_MAX=200ms"}, usesDB)
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			defer cancel()
			err := app.Start(ctx)
			require.Error(t, err)
			msg := err.Error()
			require.Contains(t, msg, "fxrepo: connect postgres at")
			require.Contains(t, msg, "gave up after")
			require.Contains(t, msg, "connection refused")
			require.NotContains(t, msg, "s3cr3t-pw", "the password never reaches the error")
			require.Contains(t, msg, "xxxxx")
			require.NoError(t, app.Stop(context.Background()))
		})
	}

	// MARTY_DB_CONNECT_TIMEOUT bounds it below the start deadline: with an
	// hour to start, Start still gives up, before its own deadline.
	app := newApp(t, []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=postgres://app:pw@" + port + "/x?sslmode=disable", "MARTY_DB_CONNECT_TIMEOUT=300ms"}, usesDB)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	require.ErrorContains(t, app.Start(ctx), "fxrepo: connect postgres at postgres://app:xxxxx@"+port+"/x")
	require.NoError(t, ctx.Err(), "the connect timeout ended the start, not the start deadline")
}
