package fxrepo

import (
	"fmt"
	"sync"

	"gorm.io/gorm"
)

// A Dialect opens databases of one MARTY_DB_DRIVER for fxrepo. PostgreSQL
// is built in; SQLite, the embedded default, registers itself when a
// package of the program imports fxrepo/sqlite:
//
//	import _ "github.com/martyfx/martyfx/fxrepo/sqlite"
//
// Drivers are linked the database/sql way so that a service pays only for
// the engines it uses: SQLite's pure-Go engine is about 11 MB of every
// binary that links it.
type Dialect interface {
	// Dialector returns the GORM dialector for a resolved DSN. It must not
	// connect: the first connection is made by the ping at Start.
	Dialector(dsn string) gorm.Dialector
}

var dialects sync.Map // driver name -> Dialect

// RegisterDialect makes a Dialect available under a MARTY_DB_DRIVER name;
// a driver package calls it from its init. Registering a name twice
// panics, as database/sql.Register does.
func RegisterDialect(driver string, d Dialect) {
	if _, loaded := dialects.LoadOrStore(driver, d); loaded {
		panic("fxrepo: RegisterDialect called twice for driver " + driver)
	}
}

// dialectFor is the registered Dialect of a driver, or an error that says
// which package to import.
func dialectFor(driver string) (Dialect, error) {
	if d, ok := dialects.Load(driver); ok {
		return d.(Dialect), nil
	}
	return nil, fmt.Errorf(`fxrepo: MARTY_DB_DRIVER is %q, but no %s driver is linked into this program: `+
		`import _ "github.com/martyfx/martyfx/fxrepo/%s" in its main package (or set MARTY_DB_DRIVER=postgres)`,
		driver, driver, driver)
}
