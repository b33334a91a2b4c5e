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
