// Package sqlite links SQLite into fxrepo: the embedded default database
// (MARTY_DB_DRIVER=sqlite), on a pure-Go engine (modernc.org/sqlite through
// github.com/glebarez/sqlite), so no cgo and no server. Import it for its
// side effect in the main package of a service that uses SQLite, and in
// tests (fxtest links it for its in-memory default):
//
//	import _ "github.com/martyfx/martyfx/fxrepo/sqlite"
//
// A service that only talks to PostgreSQL leaves it out and saves about
// 11 MB of binary.
package sqlite

import (
	"database/sql"

	"github.com/glebarez/sqlite"
	"gorm.io/gorm"
	"gorm.io/gorm/callbacks"

	"github.com/martyfx/martyfx/fxrepo"
)

func init() { fxrepo.RegisterDialect(fxrepo.DriverSQLite, Dialect{}) }

// Dialect is SQLite's fxrepo.Dialect; init registers it.
type Dialect struct{}

// Dialector returns glebarez/sqlite's dialector without its
// connect-at-construction version query (see dialector).
func (Dialect) Dialector(dsn string) gorm.Dialector {
	return dialector{sqlite.Dialector{DSN: dsn}}
}

// dialector is glebarez/sqlite without its connect-at-construction version
// query: the bundled SQLite (modernc) is always >= 3.35, so the RETURNING
// clauses are registered as the driver would, and the first connection is
// made by the ping at start.
type dialector struct{ sqlite.Dialector }

func (d dialector) Initialize(db *gorm.DB) error {
	if d.Conn != nil {
		db.ConnPool = d.Conn
	} else {
		conn, err := sql.Open(sqlite.DriverName, d.DSN)
		if err != nil {
			return err
		}
		db.ConnPool = conn
	}
	callbacks.RegisterDefaultCallbacks(db, &callbacks.Config{
		CreateClauses:        []string{"INSERT", "VALUES", "ON CONFLICT", "RETURNING"},
		UpdateClauses:        []string{"UPDATE", "SET", "FROM", "WHERE", "RETURNING"},
		DeleteClauses:        []string{"DELETE", "FROM", "WHERE", "RETURNING"},
		LastInsertIDReversed: true,
	})
	for k, v := range d.ClauseBuilders() {
		db.ClauseBuilders[k] = v
	}
	return nil
}
