package fxrepo

import (
	"fmt"
	"io/fs"
	"reflect"
	"regexp"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
)

// Value groups behind the AsXxx helpers.
const (
	modelsGroup     = "martyfx.repo.models"
	migrationsGroup = "martyfx.repo.migrations"
)

// model is one AsModel registration.
type model struct{ v any }

// migrationSet is one AsMigrations or AsOptionalMigrations registration.
type migrationSet struct {
	Migrations
	// optional sets do not open the database by themselves.
	optional bool
}

// Migrations is a named set of goose SQL migrations (AsMigrations).
type Migrations struct {
	// Name is unique in the app; the set's version table is "goose_<name>".
	Name string
	// FS holds the .sql files (see AsMigrations for driver subdirectories).
	FS fs.FS
}

// AsModel registers GORM models (pointers to structs, e.g. &Order{}): they
// are auto-migrated at start when MARTY_DB_AUTO_MIGRATE is on (the default
// outside production); else their tables must exist after the migrations
// (MARTY_DB_TABLE_CHECK). A model makes the Module open the database.
func AsModel(models ...any) fx.Option {
	opts := make([]fx.Option, 0, len(models))
	for _, m := range models {
		what := fmt.Sprintf("fxrepo.AsModel(%T)", m)
		opts = append(opts, fxcore.Group(modelsGroup, what, model{m}, func(v any) (model, error) {
			mv, ok := v.(model)
			if !ok {
				return model{}, fmt.Errorf("got %T, want a model", v)
			}
			t := reflect.TypeOf(mv.v)
			if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
				return model{}, fmt.Errorf("got %T, want a pointer to a struct such as &Order{}", mv.v)
			}
			return mv, nil
		}))
	}
	return fx.Options(opts...)
}

var setName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,40}$`)

// AsMigrations registers a named set of goose SQL migrations, applied at
// start (MARTY_DB_MIGRATE, default on) before auto-migration. When fsys
// has a subdirectory named after the driver ("postgres" or "sqlite") that
// directory is used, else its root. Each set keeps its own version table,
// "goose_<name>", so modules' migrations never collide; sets are applied in
// name order and must not depend on each other. name is lower case letters,
// digits and underscores, starting with a letter. A set makes the Module
// open the database (a migration-only app applies it and exits cleanly).
//
//	//go:embed migrations
//	var migrations embed.FS
//	sub, _ := fs.Sub(migrations, "migrations")
//	fxrepo.AsMigrations("orders", sub)
func AsMigrations(name string, fsys fs.FS) fx.Option {
	return asMigrations("fxrepo.AsMigrations", name, fsys, false)
}

// AsOptionalMigrations registers a set like AsMigrations that is applied
// only when the database is opened for another reason (a model, a set
// registered with AsMigrations, a dependent of *gorm.DB, UnitOfWork or
// OnDemand.Open): it does not open the database by itself. For modules
// whose tables matter only when the app uses the database (fxevents' outbox
// and inbox).
func AsOptionalMigrations(name string, fsys fs.FS) fx.Option {
	return asMigrations("fxrepo.AsOptionalMigrations", name, fsys, true)
}

func asMigrations(helper, name string, fsys fs.FS, optional bool) fx.Option {
	what := fmt.Sprintf("%s(%q)", helper, name)
	if !setName.MatchString(name) {
		return fx.Error(fmt.Errorf("%s: name must match %s", what, setName))
	}
	if fsys == nil {
		return fx.Error(fmt.Errorf("%s: nil fs.FS", what))
	}
	set := migrationSet{Migrations: Migrations{Name: name, FS: fsys}, optional: optional}
	return fxcore.Group(migrationsGroup, what, set, func(v any) (migrationSet, error) {
		m, ok := v.(migrationSet)
		if !ok {
			return migrationSet{}, fmt.Errorf("got %T, want a migration set", v)
		}
		return m, nil
	})
}
