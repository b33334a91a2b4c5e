package fxhttp_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// A cross-site browser POST to an admin route is refused; same-origin
// browser requests and requests without browser headers (curl) pass.
func TestAdminPostsRefuseCrossOriginBrowsers(t *testing.T) {
	t.Parallel()
	src, err := fxcore.NewSourceFrom("", []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_LOG_LEVEL=error"})
	require.NoError(t, err)
	var srv *fxhttp.Server
	app := fxtest.New(t, fxcore.Module, fxhttp.Module, fx.Replace(src), fx.NopLogger,
		fxhttp.AsAdminRoute("POST /redrive", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
		})),
		fx.Populate(&srv))
	app.RequireStart()
	defer app.RequireStop()

	post := func(headers map[string]string) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+srv.AdminAddr()+"/redrive", strings.NewReader(""))
		require.NoError(t, err)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusAccepted, post(nil), "no browser headers (curl)")
	require.Equal(t, http.StatusAccepted, post(map[string]string{"Sec-Fetch-Site": "same-origin"}))
	require.Equal(t, http.StatusForbidden, post(map[string]string{"Sec-Fetch-Site": "cross-site"}))
	require.Equal(t, http.StatusForbidden, post(map[string]string{"Origin": "https://evil.example"}))
}
