package martyfx

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxrepo"
)

// runInDir starts Modules plus opts with the default database settings
// (SQLite, "<service>.db" in the working directory) in a fresh working
// directory, stops it, and returns the files left there.
func runInDir(t *testing.T, opts ...fx.Option) []string {
	dir := t.TempDir()
	t.Chdir(dir)
	src, err := fxcore.NewSourceFrom("", []string{
		"MARTY_SERVICE_NAME=hello", "MARTY_LOG_LEVEL=error",
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_GRPC_ADDR=127.0.0.1:0",
	})
	require.NoError(t, err)
	all := append(append([]fx.Option{}, Modules...), fx.Replace(src), fx.NopLogger)
	app := fx.New(append(all, opts...)...)
	require.NoError(t, app.Err())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, app.Start(ctx))
	require.NoError(t, app.Stop(ctx))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

var helloRoute = fxhttp.AsRoute("GET /hello", func() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) })
})

// Hello has a table.
type Hello struct {
	ID   int64 `gorm:"primaryKey"`
	Text string
}

// The smallest service, every module and one HTTP route, writes nothing:
// no model, no migration and nothing that takes the database, so fxrepo
// does not open it (and fxevents' memory bus does not ask for it).
func TestModulesWithoutModelWriteNoFile(t *testing.T) {
	require.Empty(t, runInDir(t, helloRoute))
}

// The same service with a model, or a handler that takes the *gorm.DB,
// opens the database: "<service>.db" in the working directory.
func TestModulesWithModelOrDependentOpenTheDatabase(t *testing.T) {
	require.Contains(t, runInDir(t, helloRoute, fxrepo.AsModel(&Hello{})), "hello.db")
	require.Contains(t, runInDir(t, fxhttp.AsRoute("GET /count", func(db *gorm.DB) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var n int64
			_ = fxrepo.DB(r.Context(), db).Table("hellos").Count(&n).Error
		})
	})), "hello.db")
}
