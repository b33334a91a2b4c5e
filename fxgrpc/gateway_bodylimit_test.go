package fxgrpc_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

// A REST body past fxhttp's MaxBodyBytes is 413 on the gateway route,
// whether its length was declared (refused before the gateway runs) or it
// came chunked (the gateway's decoder hits the limit and would answer
// InvalidArgument, 400; fxhttp's stack answers 413 in its place).
func TestGatewayBodyPastTheLimitIs413(t *testing.T) {
	t.Parallel()
	var httpSrv *fxhttp.Server
	start(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0", "MARTY_HTTP_MAX_BODY_BYTES=64"},
		fxhttp.Module, fxgrpc.AsGateway(registerEcho), fx.Populate(&httpSrv))
	url := "http://" + httpSrv.Addr() + "/v1/echo"
	big := `{"message":"` + strings.Repeat("x", 200) + `","repeat":1}`
	for _, chunked := range []bool{false, true} {
		var body io.Reader = strings.NewReader(big)
		if chunked {
			body = io.MultiReader(body) // no length: sent chunked
		}
		req, err := http.NewRequest(http.MethodPost, url, body)
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode, "chunked=%v: %s", chunked, b)
		require.Equal(t, "application/problem+json", res.Header.Get("Content-Type"))
		require.Contains(t, string(b), "body is larger than 64 bytes")
	}

	// Within the limit the gateway answers, chunked too.
	req, err := http.NewRequest(http.MethodPost, url, io.MultiReader(strings.NewReader(`{"message":"hi","repeat":1}`)))
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "%s", b)
	require.Contains(t, string(b), `"hi"`)
}
