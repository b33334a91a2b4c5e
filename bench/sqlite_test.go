package bench

// SQLite, for the benchmarks on the embedded database (fxrepo links
// drivers the database/sql way).
import _ "github.com/martyfx/martyfx/fxrepo/sqlite"
