package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readmeCommand is one command of a README's ```sh blocks, with the output
// the README shows for it (the JSON of a `# {...}` comment line right below
// it), if any.
type readmeCommand struct {
	Line string   // as written (continuations joined), without its comment
	Args []string // the words, as the shell would split them
	Want any      // decoded (json.Number numbers) expected output, or nil
}

// readmeCommands returns the commands of every ```sh block of a README, in
// order. A line the small shell parser below does not understand (pipes,
// variables, redirections...) is an error: the test runs each command.
func readmeCommands(readme string) ([]readmeCommand, error) {
	var (
		out     []readmeCommand
		inBlock bool
		pending string
	)
	for _, line := range strings.Split(readme, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case !inBlock:
			inBlock = trimmed == "```sh"
			continue
		case trimmed == "```":
			inBlock = false
			continue
		case pending == "" && strings.HasPrefix(trimmed, "#"):
			text := strings.TrimSpace(strings.TrimPrefix(trimmed, "#"))
			if len(out) > 0 && out[len(out)-1].Want == nil && strings.HasPrefix(text, "{") {
				want, err := decodeJSON([]byte(text))
				if err != nil {
					return nil, fmt.Errorf("README output comment %q: %w", trimmed, err)
				}
				out[len(out)-1].Want = want
			}
			continue
		case trimmed == "":
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			pending += strings.TrimSuffix(trimmed, `\`) + " "
			continue
		}
		full := pending + trimmed
		pending = ""
		args, rest, err := shellFields(full)
		if err != nil {
			return nil, fmt.Errorf("README command %q: %w", full, err)
		}
		out = append(out, readmeCommand{Line: strings.TrimSpace(strings.TrimSuffix(full, rest)), Args: args})
	}
	if inBlock {
		return nil, errors.New("README: unterminated ```sh block")
	}
	return out, nil
}

// shellFields splits a simple POSIX shell command into words: blanks
// separate words, single quotes keep everything, double quotes keep all but
// \" and \\, a backslash quotes the next character, and an unquoted # at the
// start of a word begins a comment (returned as rest). Anything that would
// make it more than one plain command ($, `, |, ;, &, <, >, globs) is an
// error.
func shellFields(line string) (words []string, rest string, err error) {
	var (
		word   strings.Builder
		inWord bool
	)
	flush := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			return words, line[i:], nil
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, "", errors.New("unterminated single quote")
			}
			word.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			inWord = true
			for i++; ; i++ {
				if i >= len(line) {
					return nil, "", errors.New("unterminated double quote")
				}
				if line[i] == '"' {
					break
				}
				if strings.IndexByte("$`", line[i]) >= 0 {
					return nil, "", fmt.Errorf("%q inside double quotes is not supported", line[i])
				}
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte(`"\$`+"`", line[i+1]) >= 0 {
					i++
				}
				word.WriteByte(line[i])
			}
		case c == '\\':
			if i+1 >= len(line) {
				return nil, "", errors.New("trailing backslash")
			}
			i++
			word.WriteByte(line[i])
			inWord = true
		case strings.IndexByte("$`|;&<>(){}*?[", c) >= 0:
			return nil, "", fmt.Errorf("shell syntax %q is not supported: one plain command per line", c)
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, "", nil
}

// decodeJSON decodes b keeping numbers as json.Number, so 1 and "1" differ.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// requireShape fails unless got has exactly the shape of want: the same
// object keys, the same JSON types, and the same values, except that a
// string that is an RFC 3339 time in want only needs to be one in got.
func requireShape(t *testing.T, want, got any, where string) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		require.True(t, ok, "%s: want an object, got %#v", where, got)
		require.ElementsMatch(t, keys(w), keys(g), "%s: object keys", where)
		for k := range w {
			requireShape(t, w[k], g[k], where+"."+k)
		}
	case []any:
		g, ok := got.([]any)
		require.True(t, ok, "%s: want an array, got %#v", where, got)
		require.Len(t, g, len(w), where)
		for i := range w {
			requireShape(t, w[i], g[i], fmt.Sprintf("%s[%d]", where, i))
		}
	case string:
		g, ok := got.(string)
		require.True(t, ok, "%s: want a string, got %#v", where, got)
		if _, err := time.Parse(time.RFC3339Nano, w); err == nil {
			_, err := time.Parse(time.RFC3339Nano, g)
			require.NoError(t, err, "%s: want an RFC 3339 time", where)
			return
		}
		require.Equal(t, w, g, where)
	default:
		require.Equal(t, want, got, where)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// runCurl runs a README curl command (args without "curl") and returns the
// status and body. It runs the real curl when there is one, so the README's
// flags mean exactly what curl makes of them (curl -d without -H sends
// application/x-www-form-urlencoded); otherwise emulateCurl sends the same
// request, which TestCurlEmulation checks against curl where both exist.
func runCurl(t *testing.T, args []string) (int, []byte) {
	t.Helper()
	if curl, err := exec.LookPath("curl"); err == nil {
		out, err := exec.Command(curl, append(args, "--write-out", `\n%{http_code}`)...).Output()
		require.NoError(t, err, "curl %s", strings.Join(args, " "))
		i := bytes.LastIndexByte(out, '\n')
		require.GreaterOrEqual(t, i, 0, "curl output %q", out)
		var status int
		_, err = fmt.Sscan(string(out[i+1:]), &status)
		require.NoError(t, err, "curl status in %q", out)
		return status, out[:i]
	}
	req, err := emulateCurl(args)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

// emulateCurl builds the request curl would send for args, for the flags
// the READMEs use: -s, -X/--request, -H/--header, -d/--data (POST, and
// Content-Type application/x-www-form-urlencoded unless a header sets one)
// and one URL (http:// when it has no scheme). Any other flag is an error.
func emulateCurl(args []string) (*http.Request, error) {
	var (
		method, target string
		data           []string
		header         = http.Header{}
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		value := func() (string, error) {
			if i+1 >= len(args) {
				return "", fmt.Errorf("curl %s: missing value", a)
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "-s" || a == "--silent":
		case a == "-X" || a == "--request":
			method, err = value()
		case strings.HasPrefix(a, "-X"):
			method = strings.TrimPrefix(a, "-X")
		case a == "-H" || a == "--header":
			var h string
			if h, err = value(); err == nil {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return nil, fmt.Errorf("curl -H %q: want Name: value", h)
				}
				header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		case a == "-d" || a == "--data":
			var d string
			if d, err = value(); err == nil {
				if strings.HasPrefix(d, "@") {
					return nil, fmt.Errorf("curl -d %q: files are not emulated", d)
				}
				data = append(data, d)
			}
		case strings.HasPrefix(a, "-"):
			return nil, fmt.Errorf("curl flag %q is not emulated; teach emulateCurl or use the real curl", a)
		case target != "":
			return nil, fmt.Errorf("curl: more than one URL (%q, %q)", target, a)
		default:
			target = a
		}
		if err != nil {
			return nil, err
		}
	}
	if target == "" {
		return nil, errors.New("curl: no URL")
	}
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	if _, err := url.Parse(target); err != nil {
		return nil, fmt.Errorf("curl: %w", err)
	}
	var body io.Reader
	if data != nil {
		body = strings.NewReader(strings.Join(data, "&"))
		if method == "" {
			method = http.MethodPost
		}
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		return nil, fmt.Errorf("curl: %w", err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return req, nil
}

func TestShellFields(t *testing.T) {
	t.Parallel()
	words, rest, err := shellFields(`curl -s -X POST localhost:8080/v1/x -H 'Content-Type: application/json' -d '{"name":"Ada"}'   # comment`)
	require.NoError(t, err)
	require.Equal(t, []string{"curl", "-s", "-X", "POST", "localhost:8080/v1/x", "-H", "Content-Type: application/json", "-d", `{"name":"Ada"}`}, words)
	require.Equal(t, "# comment", rest)

	words, _, err = shellFields(`echo "a \"b\" c" d\ e 'f#g'h`)
	require.NoError(t, err)
	require.Equal(t, []string{"echo", `a "b" c`, "d e", "f#gh"}, words)

	for _, bad := range []string{`curl x | grep y`, `a; b`, `go run . &`, `echo $HOME`, `echo "$HOME"`, `cat <x`, `echo 'open`, `echo "open`} {
		_, _, err := shellFields(bad)
		require.Error(t, err, bad)
	}
}

func TestReadmeCommands(t *testing.T) {
	t.Parallel()
	cmds, err := readmeCommands("intro\n```sh\n# a comment\ngo run .   # run it\ncurl -s \\\n  localhost:8080/x\n# {\"id\":\"1\",\"n\":2}\n\n```\n```go\nnot a command\n```\n")
	require.NoError(t, err)
	require.Len(t, cmds, 2)
	require.Equal(t, []string{"go", "run", "."}, cmds[0].Args)
	require.Equal(t, "go run .", cmds[0].Line)
	require.Nil(t, cmds[0].Want)
	require.Equal(t, []string{"curl", "-s", "localhost:8080/x"}, cmds[1].Args)
	require.Equal(t, map[string]any{"id": "1", "n": json.Number("2")}, cmds[1].Want)

	_, err = readmeCommands("```sh\ncurl x | jq\n```\n")
	require.ErrorContains(t, err, "one plain command per line")
	_, err = readmeCommands("```sh\ngo run .\n")
	require.ErrorContains(t, err, "unterminated")
}

// TestCurlEmulation checks that emulateCurl sends what the real curl sends
// for the README's kinds of command (it only matters without curl).
func TestCurlEmulation(t *testing.T) {
	t.Parallel()
	type seen struct{ Method, Path, ContentType, Body string }
	var (
		mu   sync.Mutex
		last seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		last = seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b)}
		mu.Unlock()
		w.WriteHeader(http.StatusTeapot)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, args := range [][]string{
		{"-s", host + "/v1/greetings/1"},
		{"-s", "-XPOST", host + "/v1/greetings", "-d", `{"name":"Ada"}`},
		{"-s", "-X", "POST", host + "/v1/greetings", "-H", "Content-Type: application/json", "-d", `{"name":"Ada"}`},
		{"-s", "-d", `{"a":1}`, "-d", "b", srv.URL + "/x"},
		{"-s", "--request", "DELETE", srv.URL + "/v1/greetings/1"},
	} {
		req, err := emulateCurl(args)
		require.NoError(t, err, "%q", args)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		mu.Lock()
		emulated := last
		mu.Unlock()
		require.Equal(t, http.StatusTeapot, resp.StatusCode)
		if req.Method == http.MethodPost && req.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
			require.Equal(t, "application/x-www-form-urlencoded", emulated.ContentType, "curl -d's default type")
		}

		curl, err := exec.LookPath("curl")
		if err != nil {
			continue
		}
		out, err := exec.Command(curl, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		mu.Lock()
		sent := last
		mu.Unlock()
		require.Equal(t, sent, emulated, "curl %q", args)
	}
	_, err := emulateCurl([]string{"-s", "-i", "localhost:1"})
	require.ErrorContains(t, err, `curl flag "-i" is not emulated`)
	_, err = emulateCurl([]string{"-s"})
	require.ErrorContains(t, err, "no URL")
}
