package fxauth_test

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestRateLimit: per subject, a caller over its burst gets
// RESOURCE_EXHAUSTED with a RetryInfo / 429 with Retry-After and the
// RateLimit headers, while another caller is not affected; anonymous
// callers are limited by IP.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	// 0.001/s: the bucket does not refill during the test.
	a := startApp(t, append(issuerEnv(is), "MARTY_AUTH_RATE_LIMIT=0.001", "MARTY_AUTH_RATE_BURST=3"))
	alice, bob := is.token(nil), is.token(map[string]any{"sub": "bob"})

	for range 3 {
		_, _, err := a.call(t, alice, "Echo", "")
		require.NoError(t, err)
	}
	_, hdr, err := a.call(t, alice, "Echo", "")
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	var retry *errdetails.RetryInfo
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry)
	require.Positive(t, retry.GetRetryDelay().AsDuration())
	require.NotEmpty(t, hdr.Get("retry-after"))

	// One bucket for gRPC and HTTP alike: alice is out on HTTP too.
	res, _ := a.get(t, alice, "/v1/me")
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	secs, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err)
	require.Positive(t, secs)
	require.Equal(t, "3", res.Header.Get("RateLimit-Limit"))
	require.Equal(t, "0", res.Header.Get("RateLimit-Remaining"))

	// Through the gateway: 429 with Retry-After from the RetryInfo.
	res, _ = a.get(t, alice, "/gw/echo")
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.NotEmpty(t, res.Header.Get("Retry-After"))

	// bob has a bucket of his own.
	res, _ = a.get(t, bob, "/v1/me")
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "2", res.Header.Get("RateLimit-Remaining"))

	// Anonymous calls share the client IP's bucket.
	for range 3 {
		res, _ = a.get(t, "", "/v1/open")
		require.Equal(t, http.StatusOK, res.StatusCode)
	}
	res, _ = a.get(t, "", "/v1/open")
	require.Equal(t, http.StatusTooManyRequests, res.StatusCode)
	require.Positive(t, value(t, a.reg, "marty_auth_requests_total", "outcome", "rate_limited"))
}

// TestRateLimitWithoutAuth: rate limiting works with authentication off,
// by client IP behind one trusted proxy (X-Forwarded-For).
func TestRateLimitWithoutAuth(t *testing.T) {
	t.Parallel()
	a := startApp(t, []string{"MARTY_AUTH_RATE_LIMIT=0.001", "MARTY_AUTH_RATE_BURST=1", "MARTY_AUTH_TRUSTED_PROXIES=1"})
	get := func(xff string) int {
		req, err := http.NewRequest(http.MethodGet, a.httpURL+"/v1/norule", nil)
		require.NoError(t, err)
		req.Header.Set("X-Forwarded-For", xff)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusOK, get("203.0.113.7"), "no rules needed without authentication")
	require.Equal(t, http.StatusTooManyRequests, get("198.51.100.1, 203.0.113.7"), "the proxy's entry is the client")
	require.Equal(t, http.StatusOK, get("203.0.113.8"))
}
