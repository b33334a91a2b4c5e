package fxtest

import (
	"fmt"
	"sort"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Spans returns the spans that have ended so far, in the order they ended.
// They are recorded when the app includes fxtracing.Module.
func (a *App) Spans() []sdktrace.ReadOnlySpan { return a.spans.Ended() }

// RequireSpan waits (up to WaitTimeout) for an ended span named name that
// has every attribute in attrs, and returns the first one. Otherwise it
// fails the test listing the spans that ended.
func (a *App) RequireSpan(name string, attrs ...attribute.KeyValue) sdktrace.ReadOnlySpan {
	a.t.Helper()
	var found sdktrace.ReadOnlySpan
	a.eventually(func() bool {
		found = findSpan(a.spans.Ended(), name, attrs)
		return found != nil
	})
	if found == nil {
		a.fatalf("fxtest: no span %q%s ended; the spans were:\n%s", name, formatAttrs(attrs), formatSpans(a.spans.Ended()))
	}
	return found
}

func findSpan(spans []sdktrace.ReadOnlySpan, name string, attrs []attribute.KeyValue) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name && hasAttrs(s.Attributes(), attrs) {
			return s
		}
	}
	return nil
}

func hasAttrs(have, want []attribute.KeyValue) bool {
	for _, w := range want {
		ok := false
		for _, h := range have {
			if h.Key == w.Key && h.Value.Type() == w.Value.Type() && h.Value.String() == w.Value.String() {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func formatAttrs(attrs []attribute.KeyValue) string {
	if len(attrs) == 0 {
		return ""
	}
	parts := make([]string, len(attrs))
	for i, kv := range attrs {
		parts[i] = fmt.Sprintf("%s=%s", kv.Key, kv.Value.String())
	}
	sort.Strings(parts)
	return " {" + strings.Join(parts, ", ") + "}"
}

func formatSpans(spans []sdktrace.ReadOnlySpan) string {
	if len(spans) == 0 {
		return "  (none: is fxtracing.Module in the app?)"
	}
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  %q [%s]%s", s.Name(), s.SpanKind(), formatAttrs(s.Attributes()))
		if st := s.Status(); st.Code != 0 {
			fmt.Fprintf(&b, " status=%s %q", st.Code, st.Description)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
