package dashboard

// SQLite, the embedded database of the example service the browser test
// runs (fxrepo links drivers the database/sql way).
import _ "github.com/martyfx/martyfx/fxrepo/sqlite"
