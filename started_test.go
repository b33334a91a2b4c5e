package martyfx

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// With fx.New (no Run), a component of the user's that must run before the
// pod takes traffic (a consumer, a cache warm-up) declares itself to
// fxcore.Stopping when built; /readyz says "starting" until its start hook
// reports it running, although every server already listens.
func TestReadinessWaitsForADeclaredComponent(t *testing.T) {
	src, err := fxcore.NewSourceFrom("", []string{
		"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_GRPC_ADDR=127.0.0.1:0",
		"MARTY_DB_DSN=file::memory:",
	})
	require.NoError(t, err)
	release, admin := make(chan struct{}), make(chan string, 1)
	var srv *fxhttp.Server
	all := append(append([]fx.Option{}, Modules...), fx.Replace(src), fx.NopLogger, fx.Populate(&srv),
		fx.Invoke(func(lc fx.Lifecycle, stopping *fxcore.Stopping) {
			running := stopping.ExpectStart()
			lc.Append(fx.StartHook(func(ctx context.Context) error {
				admin <- srv.AdminAddr() // the servers listen by now
				select {
				case <-release:
					running()
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}))
		}))
	app := fx.New(all...)
	require.NoError(t, app.Err())
	started := make(chan error, 1)
	go func() { started <- app.Start(context.Background()) }()

	addr := <-admin
	code, body := readyz(t, addr)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "starting")

	close(release)
	require.NoError(t, <-started)
	require.Eventually(t, func() bool { code, _ := readyz(t, addr); return code == http.StatusOK }, 10*time.Second, 10*time.Millisecond,
		"ready once the declared component runs")
	require.NoError(t, app.Stop(context.Background()))
}
