package devnats

import (
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The default build links the embedded server for MARTY_NATS_EMBEDDED=true;
// -tags nonatsdev links no nats-server package into example/orders.
func TestNonatsdevBuildLinksNoNATSServer(t *testing.T) {
	t.Parallel()
	require.Len(t, Options(), map[bool]int{true: 1, false: 0}[Linked])
	require.NoError(t, Check(false))
	if Linked {
		require.NoError(t, Check(true))
	} else {
		require.ErrorContains(t, Check(true), "built with -tags nonatsdev")
	}
	if testing.Short() {
		t.Skip("-short: not listing the dependencies of example/orders")
	}
	deps := func(tags ...string) string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, "github.com/martyfx/martyfx/example/orders")...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	require.NotContains(t, deps("-tags", "nonatsdev"), "github.com/nats-io/nats-server",
		"example/orders built for a real NATS carries no server")
	require.Contains(t, deps(), "github.com/nats-io/nats-server", "the default build runs MARTY_NATS_EMBEDDED=true")
}
