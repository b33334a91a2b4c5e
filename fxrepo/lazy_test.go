package fxrepo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

// fileDB is a SQLite DSN in a fresh directory, and the directory.
func fileDB(t *testing.T) (env []string, dir string) {
	dir = t.TempDir()
	return []string{"MARTY_DB_DSN=file:" + filepath.Join(dir, "svc.db")}, dir
}

// files lists the directory.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestNothingRegisteredOpensNothing(t *testing.T) {
	t.Parallel()
	env, dir := fileDB(t)
	core, logs := observer.New(zapcore.DebugLevel)
	var checks []fxmonitor.Check
	var cfg fxrepo.Config
	startApp(t, env,
		fx.Decorate(func() *zap.Logger { return zap.New(core) }),
		fx.Populate(&cfg), // the config is read (and validated) all the same
		fx.Invoke(fx.Annotate(func(cs []fxmonitor.Check) { checks = cs }, fx.ParamTags(`group:"martyfx.monitor.checks"`))))
	require.Empty(t, files(t, dir), "no model, migration or dependent: no database file")
	require.Len(t, logs.FilterMessageSnippet("database not opened").All(), 1, "said at debug level")
	require.Equal(t, "sqlite", cfg.Driver)
	require.Len(t, checks, 1)
	require.NoError(t, checks[0].Func(context.Background()), "nothing to check")
	require.Empty(t, files(t, dir))
}

func TestWhatOpensTheDatabase(t *testing.T) {
	t.Parallel()
	for name, opt := range map[string]fx.Option{
		"model":           fxrepo.AsModel(&Widget{}),
		"migrations":      fxrepo.AsMigrations("audit", auditMigrations),
		"a *gorm.DB":      fx.Invoke(func(*gorm.DB) {}),
		"a UnitOfWork":    fx.Invoke(func(fxrepo.UnitOfWork) {}),
		"OnDemand.Open()": fx.Invoke(func(o fxrepo.OnDemand) error { _, _, err := o.Open(); return err }),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env, dir := fileDB(t)
			core, logs := observer.New(zapcore.DebugLevel)
			startApp(t, env, opt, fx.Decorate(func() *zap.Logger { return zap.New(core) }))
			require.Contains(t, files(t, dir), "svc.db")
			require.Empty(t, logs.FilterMessageSnippet("database not opened").All())
		})
	}
}

func TestOptionalMigrationsAndOnDemand(t *testing.T) {
	t.Parallel()
	// Optional migrations alone, and an OnDemand nobody opens: nothing.
	env, dir := fileDB(t)
	var od fxrepo.OnDemand
	startApp(t, env, fxrepo.AsOptionalMigrations("audit", auditMigrations), fx.Populate(&od))
	require.Empty(t, files(t, dir))

	// Opened on demand: the same database as the graph's, started before
	// the dependent's hooks, with the optional set applied.
	env, dir = fileDB(t)
	var db *gorm.DB
	var uow fxrepo.UnitOfWork
	var audits int64
	startApp(t, env, fxrepo.AsOptionalMigrations("audit", auditMigrations),
		fx.Invoke(func(o fxrepo.OnDemand, lc fx.Lifecycle) error {
			d, u, err := o.Open()
			db, uow = d, u
			lc.Append(fx.StartHook(func() error {
				return d.Table("audit_entries").Count(&audits).Error
			}))
			return err
		}))
	require.Contains(t, files(t, dir), "svc.db")
	require.EqualValues(t, 1, audits, "migrated before the dependent's start hook")
	require.NotNil(t, db)
	require.NotNil(t, uow)
	require.NoError(t, uow.Do(context.Background(), func(ctx context.Context) error {
		return fxrepo.DB(ctx, db).Exec("INSERT INTO audit_entries (id, what) VALUES (2, 'x')").Error
	}))

	// The zero OnDemand (no fxrepo.Module) has no database.
	d, u, err := fxrepo.OnDemand{}.Open()
	require.NoError(t, err)
	require.Nil(t, d)
	require.Nil(t, u)
}

func TestOnDemandIsTheGraphsDatabase(t *testing.T) {
	t.Parallel()
	env, _ := fileDB(t)
	var od fxrepo.OnDemand
	var db *gorm.DB
	var uow fxrepo.UnitOfWork
	startApp(t, env, fx.Populate(&od, &db, &uow))
	d, u, err := od.Open()
	require.NoError(t, err)
	require.Same(t, db, d)
	require.Equal(t, uow, u)
}
