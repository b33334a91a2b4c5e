package saga_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
)

// The saga's admin actions are served by fxhttp's admin server behind
// MARTY_HTTP_ADMIN_TOKEN.
func TestSagaAdminActionsNeedTheAdminToken(t *testing.T) {
	t.Parallel()
	var srv *fxhttp.Server
	a := newApp(t, sqliteBackend(t), []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0",
		"MARTY_HTTP_ADMIN_TOKEN=s3cret"}, orderSaga(&hooks{}), fxhttp.Module, fxmonitor.Module, fx.Populate(&srv))
	a.publish(t, OrderPlaced{OrderID: "silent-8", Customer: "silent"})
	a.waitStatus(t, "silent-8", "running")
	post := func(token string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+srv.AdminAddr()+"/sagas/order:silent-8/abort", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusUnauthorized, post(""))
	require.Equal(t, http.StatusUnauthorized, post("wrong"))
	require.Equal(t, "running", string(a.status(t, "silent-8")))
	require.Equal(t, http.StatusOK, post("s3cret"))
	require.Equal(t, "aborted", string(a.status(t, "silent-8")))
}
