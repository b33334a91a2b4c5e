package fxhttp

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeJSON feeds arbitrary bodies and content types to the strict
// decoder: it returns nil or a *DecodeError with a 4xx status and a reason,
// and never panics.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"item":"book","quantity":2}`, `{"item":"book"} x`, `{"color":1}`, `[`, `{"quantity":1e999}`,
		`{"item":"\ud800"}`, "\x00", `null`, `{"item":null}`, `{"quantity":-0}`, strings.Repeat("[", 10000),
	} {
		f.Add(s, "application/json")
	}
	f.Add(`{}`, "text/plain")
	f.Add(`{}`, ";;;=")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		var dst createOrder
		err := DecodeJSON(httptest.NewRecorder(), r, &dst)
		if err == nil {
			return
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Fatalf("not a DecodeError: %v", err)
		}
		if de.Status < 400 || de.Status > 499 || de.Reason == "" {
			t.Fatalf("bad DecodeError: %+v", de)
		}
		w := httptest.NewRecorder()
		WriteError(w, r, err)
		if w.Code != de.Status {
			t.Fatalf("WriteError wrote %d for %d", w.Code, de.Status)
		}
	})
}
