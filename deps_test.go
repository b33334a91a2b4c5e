package martyfx

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// martyfx.Modules links no engine a service did not ask for: SQLite comes
// with fxrepo/sqlite, protovalidate's CEL interpreter with
// fxgrpc/bufvalidate, the NATS server with natsjs/natsdev (issue 21's
// footprint; bench/footprint measures the bytes).
func TestModulesLinkNoOptionalEngine(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, dep := range strings.Fields(string(out)) {
		for _, prefix := range []string{"modernc.org/sqlite", "github.com/glebarez/", "buf.build/go/protovalidate",
			"cel.dev/", "github.com/google/cel-go", "github.com/antlr4-go/", "github.com/nats-io/nats-server/",
			"go.opentelemetry.io/contrib/exporters/autoexport"} {
			require.False(t, strings.HasPrefix(dep, prefix), "martyfx links %s", dep)
		}
	}
}

// TestFxtestLinksNoServer: fxtest is in every test binary of a martyfx
// service, so what it links is compiled (with -race) before a new project's
// first test runs. nats-server is the heaviest package tree a test could
// want; natsdev.RunForTest brings it only to the tests that start one.
func TestFxtestLinksNoServer(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "./fxtest").CombinedOutput()
	require.NoError(t, err, "%s", out)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "github.com/martyfx/martyfx/fxtest", "go list answered for fxtest")
	for _, dep := range deps {
		require.False(t, strings.HasPrefix(dep, "github.com/nats-io/nats-server/"), "fxtest links %s", dep)
	}
}
