package health

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// Verdict is a probe's overall answer.
type Verdict string

// The probe verdicts. OK and Degraded answer 200, the others 503.
const (
	VerdictOK           Verdict = "ok"
	VerdictDegraded     Verdict = "degraded"
	VerdictFailing      Verdict = "failing"
	VerdictStarting     Verdict = "starting"
	VerdictShuttingDown Verdict = "shutting down"
)

// Healthy reports whether the verdict answers 200.
func (v Verdict) Healthy() bool { return v == VerdictOK || v == VerdictDegraded }

// Report is a probe's answer with every check of the kind.
type Report struct {
	Kind    string   `json:"kind"`
	Status  Verdict  `json:"status"`
	Checks  []Result `json:"checks"`
	Startup bool     `json:"startup_done"`
}

// Probe brings the checks of kind up to date and returns the verdict, as the
// probe endpoints do.
func (h *Health) Probe(ctx context.Context, kind Kind) Verdict {
	h.evaluate(ctx, kind)
	h.recompute()
	return h.verdict(kind)
}

// Report runs Probe and returns the verdict with the results of the kind's
// checks (and, while starting, of the startup checks).
func (h *Health) Report(ctx context.Context, kind Kind) Report {
	v := h.Probe(ctx, kind)
	rep := Report{Kind: kind.String(), Status: v, Checks: []Result{}, Startup: h.startupDone.Load()}
	if i := kind.index(); i >= 0 {
		for _, s := range h.byKind[i] {
			rep.Checks = append(rep.Checks, s.result())
		}
	}
	if v == VerdictStarting && kind != Startup {
		for _, s := range h.byKind[Startup.index()] {
			if s.Kinds&kind == 0 {
				rep.Checks = append(rep.Checks, s.result())
			}
		}
	}
	return rep
}

// verdict reads the cached statuses; it does not allocate.
func (h *Health) verdict(kind Kind) Verdict {
	i := kind.index()
	if i < 0 {
		return VerdictFailing
	}
	switch kind {
	case Readiness:
		if h.stopping.Load() {
			return VerdictShuttingDown
		}
		if !h.startupDone.Load() || !h.appStarted() {
			return VerdictStarting
		}
	case Startup:
		if h.startupDone.Load() {
			return VerdictOK
		}
	}
	v := VerdictOK
	for _, s := range h.byKind[i] {
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		if st == StatusPassing {
			continue
		}
		if s.Critical {
			if kind == Startup {
				return VerdictStarting
			}
			return VerdictFailing
		}
		v = VerdictDegraded
	}
	return v
}

// ProbeHandler serves a probe: 200 or 503 with a plain text body ("ok", or
// the verdict and a line per check that is not passing), or with ?verbose
// the Report as JSON.
func (h *Health) ProbeHandler(kind Kind) http.Handler {
	return &probeHandler{h: h, kind: kind}
}

type probeHandler struct {
	h    *Health
	kind Kind
}

var (
	hdrText    = []string{"text/plain; charset=utf-8"}
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrNoSniff = []string{"nosniff"}
	bufPool    = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}
)

func (p *probeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr["Cache-Control"] = hdrNoStore
	hdr["X-Content-Type-Options"] = hdrNoSniff
	if wantsVerbose(r.URL.RawQuery) {
		rep := p.h.Report(r.Context(), p.kind)
		hdr["Content-Type"] = hdrJSON
		w.WriteHeader(code(rep.Status))
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	v := p.h.Probe(r.Context(), p.kind)
	hdr["Content-Type"] = hdrText
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], v...)
	b = append(b, '\n')
	if v != VerdictOK && v != VerdictShuttingDown {
		b = p.h.appendProblems(b, p.kind, v)
	}
	w.WriteHeader(code(v))
	_, _ = w.Write(b)
	*bp = b
	bufPool.Put(bp)
}

// appendProblems writes a line per check that is not passing.
func (h *Health) appendProblems(b []byte, kind Kind, v Verdict) []byte {
	list := h.byKind[kind.index()]
	if v == VerdictStarting {
		list = h.byKind[Startup.index()]
	}
	for _, s := range list {
		s.mu.Lock()
		st, err := s.status, s.err
		s.mu.Unlock()
		if st == StatusPassing {
			continue
		}
		b = append(b, "[-]"...)
		b = append(b, s.Name...)
		b = append(b, ' ')
		b = append(b, st.String()...)
		if !s.Critical {
			b = append(b, " (non-critical)"...)
		}
		b = append(b, ": "...)
		if err != nil {
			b = append(b, oneLine(err.Error())...)
		} else {
			b = append(b, "no result yet"...)
		}
		b = append(b, '\n')
	}
	return b
}

func oneLine(s string) string {
	if strings.ContainsAny(s, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
	}
	return s
}

func code(v Verdict) int {
	if v.Healthy() {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

// wantsVerbose finds a "verbose" parameter (any value but false/0) without
// parsing the query into a map.
func wantsVerbose(q string) bool {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == "verbose" {
			return v != "false" && v != "0"
		}
	}
	return false
}

// Verdicts returns each probe's verdict from the cached results, by kind
// name ("startup", "liveness", "readiness"), running no check: for status
// pages.
func (h *Health) Verdicts() map[string]Verdict {
	out := make(map[string]Verdict, len(kinds))
	for i, k := range kinds {
		out[kindNames[i]] = h.verdict(k)
	}
	return out
}
