package fxrepo

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
	"gorm.io/gorm"
)

// Table checks (MARTY_DB_TABLE_CHECK).
const (
	tableCheckStart     = "start"
	tableCheckReadiness = "readiness"
	tableCheckOff       = "off"
)

// checkTablesAtStart checks, when the models were not auto-migrated, that
// each one's table exists: a service whose tables were never created would
// otherwise answer every write with "no such table" while its probes say
// ok. A missing table fails the start, or with TableCheck "readiness"
// fails the readiness check until it exists.
func (d *Database) checkTablesAtStart(ctx context.Context) error {
	if len(d.opts.Models) == 0 || d.cfg.TableCheck == tableCheckOff {
		return nil
	}
	err := d.checkTables(ctx)
	if err == nil || d.cfg.TableCheck != tableCheckReadiness {
		return err
	}
	d.tablesMissing.Store(true)
	d.log.Warn("a model's table is missing: readiness fails until it exists (MARTY_DB_TABLE_CHECK=readiness)", zap.Error(err))
	return nil
}

// checkTables returns an error naming every registered model whose table
// does not exist, and how to create it.
func (d *Database) checkTables(ctx context.Context) error {
	db := d.gdb.WithContext(ctx)
	mig := db.Migrator()
	seen := map[string]bool{}
	var missing []string
	for _, m := range d.opts.Models {
		stmt := &gorm.Statement{DB: db}
		if err := stmt.Parse(m); err != nil {
			return fmt.Errorf("fxrepo: model %T: %w", m, err)
		}
		table := stmt.Schema.Table
		if seen[table] {
			continue
		}
		seen[table] = true
		if !mig.HasTable(m) {
			missing = append(missing, fmt.Sprintf("%q (model %T)", table, m))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing) // by table name: Fx gives the models in no fixed order
	// HasTable says false when its query fails: tell a lost connection
	// from a missing table.
	if err := d.sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("fxrepo: check tables on %s at %s: %w", d.target.driver, d.target.redacted, d.target.scrub(err))
	}
	if len(missing) == 1 {
		return fmt.Errorf("fxrepo: table %s does not exist: create it with a goose migration "+
			"(fxrepo.AsMigrations), or set MARTY_DB_AUTO_MIGRATE=true outside production", missing[0])
	}
	return fmt.Errorf("fxrepo: tables %s do not exist: create them with goose migrations "+
		"(fxrepo.AsMigrations), or set MARTY_DB_AUTO_MIGRATE=true outside production", strings.Join(missing, ", "))
}
