package martyfx

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The front page's service is example/hello's code, which the build
// compiles: the README shows code that works.
func TestREADMEShowsExampleHello(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	src, err := os.ReadFile("example/hello/main.go")
	require.NoError(t, err)
	_, code, ok := strings.Cut(string(src), "func main()")
	require.True(t, ok, "example/hello has a main")
	code = "func main()" + code
	require.Contains(t, string(readme), "```go\n"+code+"```\n", "README.md's first snippet must be example/hello/main.go from func main on")
}
