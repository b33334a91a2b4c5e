package main

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxtest"
)

func TestMain(m *testing.M) { fxtest.VerifyNoLeaks(m) }

// walkthrough is a README section's shell: the command that starts the
// service and the commands to run against it, each with the output the
// README says it prints (its "# →" lines).
type walkthrough struct {
	start    string
	commands []command
}

type command struct {
	line string
	want []string
}

// readWalkthrough reads the section of example/README.md that starts with
// heading: its first sh block starts the service, its second is the
// walkthrough.
func readWalkthrough(t *testing.T, heading string) walkthrough {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), heading+"\n")
	require.True(t, ok, "example/README.md has no section %q", heading)
	section, _, _ = strings.Cut(section, "\n## ")
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(section, -1)
	require.Len(t, blocks, 2, "the section has the start command and the walkthrough, in two sh blocks")

	w := walkthrough{start: strings.TrimSpace(blocks[0][1])}
	pending := ""
	for line := range strings.SplitSeq(blocks[1][1], "\n") {
		if pending != "" {
			line = pending + strings.TrimSpace(line)
			pending = ""
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			pending = cont
			continue
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "# → "):
			require.NotEmpty(t, w.commands, "%q follows no command", line)
			last := &w.commands[len(w.commands)-1]
			last.want = append(last.want, strings.TrimPrefix(line, "# → "))
		case strings.HasPrefix(line, "#"):
		default:
			w.commands = append(w.commands, command{line: line})
		}
	}
	return w
}

var assignment = regexp.MustCompile(`^([A-Z_]+)=\$\((.*)\)$`)

// TestREADMESaga runs the README's saga walkthrough as written, against the
// orders app built as main builds it (options, defaultEnv) with the
// settings of the README's start command, on free ports: every command
// must print what its "# →" lines say (they are re-run until they do, as the
// saga's steps are asynchronous).
func TestREADMESaga(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: the README's walkthrough needs it", tool)
		}
	}
	w := readWalkthrough(t, "## An order saga: orders, payment, notifier")

	// The start command: VAR=value ... go run ./example/orders.
	var env []string
	fields := strings.Fields(w.start)
	for len(fields) > 0 && strings.Contains(fields[0], "=") {
		env = append(env, fields[0])
		fields = fields[1:]
	}
	require.Equal(t, []string{"go", "run", "./example/orders"}, fields, "the start command: %s", w.start)
	require.NotEmpty(t, env, "the walkthrough sets a short deadline")

	opts := append(options(nil), fxtest.Env(append(defaultEnv(nil), env...)...), fxtest.WaitTimeout(30*time.Second))
	app := fxtest.New(t, opts...)
	httpHost := strings.TrimPrefix(app.HTTP().BaseURL, "http://")
	adminHost := strings.TrimPrefix(app.AdminURL(), "http://")

	vars := map[string]string{}
	run := func(line string) (string, error) {
		line = strings.ReplaceAll(line, "localhost:8080", httpHost)
		line = strings.ReplaceAll(line, "localhost:9090", adminHost)
		cmd := exec.CommandContext(t.Context(), "bash", "-c", line)
		cmd.Env = os.Environ()
		for k, v := range vars {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}

	require.GreaterOrEqual(t, len(w.commands), 10, "the walkthrough's commands")
	for _, c := range w.commands {
		if m := assignment.FindStringSubmatch(c.line); m != nil {
			out, err := run(m[2])
			require.NoError(t, err, c.line)
			require.Regexp(t, `^[0-9a-f-]{36}$`, out, "%s: an order id", c.line)
			vars[m[1]] = out
			continue
		}
		if strings.HasPrefix(c.line, "sleep ") {
			_, err := run(c.line)
			require.NoError(t, err, c.line)
			continue
		}
		require.NotEmpty(t, c.want, "%s: the README says what it prints (# → lines)", c.line)
		want := strings.Join(c.want, "\n")
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			out, err := run(c.line)
			if assert.NoError(ct, err) {
				assert.Equal(ct, want, out, "what the README says")
			}
		}, 30*time.Second, 100*time.Millisecond, c.line)
	}
}

// Without NATS the orders binary runs the notifier and payment in process;
// with it, only orders and its saga (they run as their own services).
func TestOptions(t *testing.T) {
	t.Parallel()
	require.Len(t, options(nil), 4)
	require.Len(t, options([]string{"MARTY_NATS_URL=nats://127.0.0.1:4222"}), 3)
	require.Equal(t, []string{"MARTY_EVENTS_BUS=outbox"}, defaultEnv([]string{"HOME=/root"}))
	require.Empty(t, defaultEnv([]string{"MARTY_EVENTS_BUS=memory"}), "an explicit bus is kept")
}
