package fxhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// refused reports whether addr no longer accepts connections.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

type result struct {
	code  int
	body  string
	close bool
	err   error
}

func fetchURL(c *http.Client, url string) result {
	resp, err := c.Get(url)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{code: resp.StatusCode, body: string(b), close: resp.Close, err: err}
}

func TestStopDrainsTheAPIServerBeforeTheAdminServer(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	h := start(t, []string{"MARTY_HTTP_DRAIN_DELAY=50ms", "MARTY_HTTP_ACCESS_LOG=off"},
		AsRoute("GET /ok", func() http.Handler { return text("ok") }),
		AsRoute("GET /hold", func() http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-release
				_, _ = io.WriteString(w, "held")
			})
		}),
		AsAdminRoute("GET /ping", func() http.Handler { return text("pong") }),
	)
	api, admin := h.srv.Addr(), h.srv.AdminAddr()
	before := fetchURL(h.client, h.url("/ok"))
	require.NoError(t, before.err)
	require.False(t, before.close, "keep-alive while serving")

	// Shutdown has begun, the listeners are still open: requests are
	// served with "Connection: close", so clients move on.
	atBegin := make(chan result, 1)
	h.stop.OnBegin(func() {
		r := fetchURL(h.client, h.url("/ok"))
		if refused(api) || refused(admin) {
			r.err = net.ErrClosed
		}
		atBegin <- r
	})

	held := make(chan result, 1)
	go func() { held <- fetchURL(h.client, h.url("/hold")) }()
	<-entered

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stopped <- h.app.Stop(ctx)
	}()
	r := <-atBegin
	require.NoError(t, r.err, "both listeners open when shutdown begins")
	require.Equal(t, http.StatusOK, r.code)
	require.True(t, r.close, "Connection: close once shutdown has begun")

	// The api server drains (its listener closed, /hold in flight) while
	// the admin server still answers.
	require.Eventually(t, func() bool { return refused(api) }, 5*time.Second, 5*time.Millisecond)
	ping := fetchURL(h.client, "http://"+admin+"/ping")
	require.NoError(t, ping.err, "the admin server answers while the api server drains")
	require.Equal(t, "pong", ping.body)

	close(release)
	r = <-held
	require.NoError(t, r.err, "the request in flight completes")
	require.Equal(t, http.StatusOK, r.code)
	require.Equal(t, "held", r.body)
	require.NoError(t, <-stopped)
	require.True(t, refused(admin), "the admin server stopped last")
	require.Equal(t, 1, h.logs.FilterMessage("stop sequence finished").Len())
}

func TestStopDeadlineDuringTheDrainStopsHardWithAnError(t *testing.T) {
	t.Parallel()
	h := start(t, []string{"MARTY_HTTP_DRAIN_DELAY=1h"}, AsRoute("GET /ok", func() http.Handler { return text("ok") }))
	api, admin := h.srv.Addr(), h.srv.AdminAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := h.srv.Stop(ctx) // the stop hook
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "the stop deadline cut the drain delay (1h0m0s) short")
	require.True(t, refused(api), "api server stopped")
	require.True(t, refused(admin), "admin server stopped")
}
