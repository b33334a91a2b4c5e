package fxmonitor_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// fxmonitor's probes and /metrics are open admin routes; /statusz, the
// alerts views and the dashboard are protected: not served in production
// without MARTY_HTTP_ADMIN_TOKEN, behind it with one.
func TestAdminRoutesOpenAndProtectedInProduction(t *testing.T) {
	t.Parallel()
	open := []string{"/livez", "/readyz", "/startupz", "/metrics"}
	protected := []string{"/statusz", "/alerts", "/alerts/rules.yaml", "/dashboard/", "/dashboard/api/state"}

	h := start(t, []string{"MARTY_ENV=production"})
	for _, p := range open {
		code, _, _ := h.get(p)
		require.Equal(t, http.StatusOK, code, p)
	}
	for _, p := range protected {
		code, _, _ := h.get(p)
		require.Equal(t, http.StatusNotFound, code, "%s is not served in production without a token", p)
	}

	const token = "monitor-test-token"
	h = start(t, []string{"MARTY_ENV=production", "MARTY_HTTP_ADMIN_TOKEN=" + token})
	for _, p := range open {
		code, _, _ := h.get(p)
		require.Equal(t, http.StatusOK, code, "%s needs no token", p)
	}
	for _, p := range protected {
		code, _, _ := h.get(p)
		require.Equal(t, http.StatusUnauthorized, code, p)
		code, _, _ = h.get(p, "Authorization", "bearer "+token)
		require.Equal(t, http.StatusOK, code, p)
	}
}
