package fxtest

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
	"testing"
)

// HTTPClient is a small JSON client of one of the app's HTTP servers. Its
// methods fail the test when the request cannot be made or the response
// cannot be decoded, and return the status code.
type HTTPClient struct {
	// BaseURL is "http://127.0.0.1:port".
	BaseURL string
	// Client is the traced client the requests go through.
	Client *http.Client
	t      testing.TB
}

// URL returns BaseURL + path.
func (c *HTTPClient) URL(path string) string { return c.BaseURL + path }

// Get sends GET path and decodes the response body into out (see Do).
func (c *HTTPClient) Get(path string, out any) int {
	c.t.Helper()
	return c.Do(http.MethodGet, path, nil, out)
}

// PostJSON sends body as JSON with POST and decodes the response into out.
func (c *HTTPClient) PostJSON(path string, body, out any) int {
	c.t.Helper()
	return c.Do(http.MethodPost, path, body, out)
}

// Do sends a request with body encoded as JSON (none when nil) and decodes
// the response body into out, whatever the status: a JSON body into any
// pointer, any body into a *string or *[]byte. out may be nil. It returns the
// status code.
func (c *HTTPClient) Do(method, path string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatalf("fxtest: %s %s: encode the request body %T: %v", method, path, body, err)
			return 0
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.URL(path), rd)
	if err != nil {
		c.t.Fatalf("fxtest: %s %s: %v", method, path, err)
		return 0
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, data := c.Send(req) //nolint:bodyclose // Send reads and closes the body
	if resp == nil {
		return 0
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = data
	case *string:
		*o = string(data)
	default:
		if len(bytes.TrimSpace(data)) == 0 {
			break
		}
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if !strings.Contains(ct, "json") {
			c.t.Fatalf("fxtest: %s %s: status %d, Content-Type %q is not JSON, cannot decode into %T; body:\n%s",
				method, path, resp.StatusCode, resp.Header.Get("Content-Type"), out, clip(data))
			return resp.StatusCode
		}
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("fxtest: %s %s: status %d: decode the body into %T: %v; body:\n%s",
				method, path, resp.StatusCode, out, err, clip(data))
		}
	}
	return resp.StatusCode
}

// Send sends req and returns the response with its body read (and closed).
func (c *HTTPClient) Send(req *http.Request) (*http.Response, []byte) {
	c.t.Helper()
	resp, err := c.Client.Do(req)
	if err != nil {
		c.t.Fatalf("fxtest: %s %s: %v", req.Method, req.URL, err)
		return nil, nil
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("fxtest: %s %s: read the body: %v", req.Method, req.URL, err)
		return nil, nil
	}
	return resp, data
}

func clip(b []byte) string {
	const maxLen = 2048
	if len(b) > maxLen {
		return string(b[:maxLen]) + "…"
	}
	return string(b)
}
