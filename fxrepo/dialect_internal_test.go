package fxrepo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A driver no package registered fails with the import that links it.
func TestAnUnlinkedDriverSaysWhatToImport(t *testing.T) {
	t.Parallel()
	_, err := dialectFor("duckdb")
	require.EqualError(t, err, `fxrepo: MARTY_DB_DRIVER is "duckdb", but no duckdb driver is linked into this program: `+
		`import _ "github.com/martyfx/martyfx/fxrepo/duckdb" in its main package (or set MARTY_DB_DRIVER=postgres)`)
	require.Panics(t, func() { RegisterDialect("postgres-twice", nil); RegisterDialect("postgres-twice", nil) })
}
