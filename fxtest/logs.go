package fxtest

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// RequireLog waits (up to WaitTimeout) for a log entry with the message msg
// that has every field in fields (compared by their encoded values) and
// returns the first one. Otherwise it fails the test listing the entries.
func (a *App) RequireLog(msg string, fields ...zap.Field) observer.LoggedEntry {
	a.t.Helper()
	want := encodeFields(fields)
	var found *observer.LoggedEntry
	a.eventually(func() bool {
		for _, e := range a.logs.AllUntimed() {
			if e.Message == msg && hasFields(e.ContextMap(), want) {
				found = &e
				return true
			}
		}
		return false
	})
	if found == nil {
		a.fatalf("fxtest: no log %q%s; the logs were:\n%s", msg, formatFields(want), formatLogs(a.logs.AllUntimed()))
		return observer.LoggedEntry{}
	}
	return *found
}

func encodeFields(fields []zap.Field) map[string]any {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	return enc.Fields
}

func hasFields(have, want map[string]any) bool {
	for k, w := range want {
		h, ok := have[k]
		if !ok || !reflect.DeepEqual(h, w) && fmt.Sprint(h) != fmt.Sprint(w) {
			return false
		}
	}
	return true
}

func formatFields(m map[string]any) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return " {" + strings.Join(parts, ", ") + "}"
}

// formatLogs lists the entries, one a line, leaving out Fx's debug events
// (provided, decorated, hook executed ...), which drown the app's own.
func formatLogs(entries []observer.LoggedEntry) string {
	var b strings.Builder
	for _, e := range entries {
		if e.LoggerName == "fx" && e.Level == zapcore.DebugLevel {
			continue
		}
		name := ""
		if e.LoggerName != "" {
			name = e.LoggerName + ": "
		}
		fmt.Fprintf(&b, "  %s %s%q%s\n", e.Level.CapitalString(), name, e.Message, formatFields(e.ContextMap()))
	}
	if b.Len() == 0 {
		return "  (none)"
	}
	return b.String()
}
