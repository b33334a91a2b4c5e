package fxrepo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"go.uber.org/zap"
)

// migrationsFS picks the driver's subdirectory of a set when it has one.
func migrationsFS(fsys fs.FS, driver string) (fs.FS, error) {
	if st, err := fs.Stat(fsys, driver); err == nil && st.IsDir() {
		return fs.Sub(fsys, driver)
	}
	return fsys, nil
}

// migrate applies every set's pending migrations, sets in name order, each
// with its own version table goose_<name>. On PostgreSQL an advisory lock
// (one per set) keeps replicas starting together from racing.
func migrate(ctx context.Context, sqlDB *sql.DB, driver string, sets []Migrations, log *zap.Logger) error {
	sets = slices.Clone(sets)
	slices.SortFunc(sets, func(a, b Migrations) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(sets); i++ {
		if sets[i].Name == sets[i-1].Name {
			return fmt.Errorf("fxrepo: migrations %q registered twice with fxrepo.AsMigrations", sets[i].Name)
		}
	}
	dialect := goose.DialectSQLite3
	if driver == DriverPostgres {
		dialect = goose.DialectPostgres
	}
	for _, set := range sets {
		fsys, err := migrationsFS(set.FS, driver)
		if err != nil {
			return fmt.Errorf("fxrepo: migrations %q: %w", set.Name, err)
		}
		opts := []goose.ProviderOption{
			goose.WithTableName("goose_" + set.Name),
			goose.WithDisableGlobalRegistry(true),
			goose.WithLogger(goose.NopLogger()),
		}
		if driver == DriverPostgres {
			h := fnv.New64a()
			_, _ = h.Write([]byte("martyfx.goose." + set.Name))
			locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 300))
			if err != nil {
				return fmt.Errorf("fxrepo: migrations %q: %w", set.Name, err)
			}
			opts = append(opts, goose.WithSessionLocker(locker))
		}
		p, err := goose.NewProvider(dialect, sqlDB, fsys, opts...)
		if err != nil {
			return fmt.Errorf("fxrepo: migrations %q: %w", set.Name, err)
		}
		results, err := p.Up(ctx)
		for _, r := range results {
			if r.Error == nil {
				log.Info("migration applied", zap.String("set", set.Name), zap.Int64("version", r.Source.Version),
					zap.String("file", r.Source.Path), zap.Duration("elapsed", r.Duration))
			}
		}
		var pe *goose.PartialError
		if errors.As(err, &pe) && pe.Failed != nil && pe.Failed.Source != nil {
			return fmt.Errorf("fxrepo: migrations %q: %s failed (%d applied before it): %w",
				set.Name, path.Base(pe.Failed.Source.Path), len(pe.Applied), pe.Err)
		}
		if err != nil {
			return fmt.Errorf("fxrepo: migrations %q: %w", set.Name, err)
		}
	}
	return nil
}
