package martyfx

// SQLite, for the tests that run Modules on the embedded database (a
// service links it with this same import; martyfx.Modules does not).
import _ "github.com/martyfx/martyfx/fxrepo/sqlite"
