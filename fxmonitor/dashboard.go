package fxmonitor

//go:generate sh dashboard/build.sh

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
)

// dist holds the page and its pinned libraries (uPlot, Viz.js), built by
// `go generate ./fxmonitor` (dashboard/build.sh) and committed.
//
//go:embed dashboard/dist
var dist embed.FS

// DashboardPath is where Module serves the dashboard on the admin server.
const DashboardPath = "/dashboard"

// historyLen is how many past statuses of each check the page shows.
const historyLen = 30

// deadLetterLimit is how many dead letters the page lists.
const deadLetterLimit = 50

// DashboardOptions are NewDashboard's inputs; only Gatherer is required.
type DashboardOptions struct {
	// Info is the service's identity.
	Info fxcore.ServiceInfo
	// Health, Breakers and Alerts feed their panels; nil hides the panel.
	Health   *Health
	Breakers *Breakers
	Alerts   *Alerts
	// Gatherer is sampled for the RED and event bus panels.
	Gatherer prometheus.Gatherer
	// Graph is the app's dependency graph in DOT (fx.DotGraph); "" hides it.
	Graph string
	// Interval is the sampling and push period (default 2s).
	Interval time.Duration
	// Window is the history kept for the charts (default 5m).
	Window time.Duration
	// Logger defaults to zap.NewNop().
	Logger *zap.Logger
}

// Dashboard is the operations dashboard: an embedded page served under
// /dashboard/ with its own endpoints:
//
//	GET  /dashboard/                    the page
//	GET  /dashboard/assets/{file}       its scripts, styles and licences
//	GET  /dashboard/api/state           the state document (JSON)
//	GET  /dashboard/api/events          the state, pushed every Interval (server-sent events)
//	GET  /dashboard/api/graph           the Fx dependency graph ({"dot": "..."})
//	POST /dashboard/api/dead/{id}/retry re-drives a dead letter (same-origin only)
//
// It samples the registry every Interval into a ring buffer covering Window,
// from which it computes rate, error ratio, p50 and p99 per HTTP route and
// gRPC method. Dead letters come from the event bus' admin routes
// (GET /events/dead, POST /events/dead/{id}/retry) when the app has them.
type Dashboard struct {
	opts    DashboardOptions
	log     *zap.Logger
	started time.Time
	smooth  int
	mux     *http.ServeMux
	assets  http.Handler

	mu      sync.Mutex
	ring    *ring
	history map[string][]CheckStatus
	tick    chan struct{} // closed and replaced after each sample
	admin   *http.ServeMux
	adminOK bool

	viewers  atomic.Int64 // open event streams
	lastView atomic.Int64 // unix nanos of the last state request
	done     chan struct{}
	doneOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
	running  bool
}

// NewDashboard returns a dashboard; call Start to sample and Stop to end.
func NewDashboard(opts DashboardOptions) *Dashboard {
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Window < opts.Interval {
		opts.Window = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	sub, _ := fs.Sub(dist, "dashboard/dist")
	d := &Dashboard{
		opts:    opts,
		log:     opts.Logger,
		started: time.Now(),
		smooth:  max(1, int((10*time.Second)/opts.Interval)),
		ring:    newRing(int(opts.Window/opts.Interval) + 1),
		history: map[string][]CheckStatus{},
		tick:    make(chan struct{}),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		assets:  http.StripPrefix(DashboardPath+"/assets/", http.FileServerFS(sub)),
	}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("GET "+DashboardPath+"/{$}", d.serveIndex)
	d.mux.HandleFunc("GET "+DashboardPath+"/assets/", d.serveAsset)
	d.mux.HandleFunc("GET "+DashboardPath+"/api/state", d.serveState)
	d.mux.HandleFunc("GET "+DashboardPath+"/api/events", d.serveEvents)
	d.mux.HandleFunc("GET "+DashboardPath+"/api/graph", d.serveGraph)
	d.mux.HandleFunc("POST "+DashboardPath+"/api/dead/{id}/retry", d.serveRetry)
	return d
}

// UseAdminRoutes gives the dashboard the admin server's other routes, from
// which it reads the event bus' dead letters and re-drives them. Module
// calls it with the app's fxhttp.AsAdminRoute group.
func (d *Dashboard) UseAdminRoutes(routes []fxhttp.Route) {
	mux := http.NewServeMux()
	for _, rt := range routes {
		path := rt.Pattern
		if _, p, ok := strings.Cut(path, " "); ok {
			path = p
		}
		if path == DashboardPath || strings.HasPrefix(path, DashboardPath+"/") {
			continue
		}
		func() {
			defer func() { _ = recover() }() // conflicting patterns: fxhttp reports them
			mux.Handle(rt.Pattern, rt.Handler)
		}()
	}
	_, pattern := mux.Handler(probeRequest("GET", "/events/dead"))
	d.mu.Lock()
	d.admin, d.adminOK = mux, pattern != ""
	d.mu.Unlock()
}

func probeRequest(method, target string) *http.Request {
	r, _ := http.NewRequest(method, target, nil)
	return r
}

// Start samples the registry every Interval until Stop.
func (d *Dashboard) Start() {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return
	}
	d.running = true
	d.mu.Unlock()
	d.sample(context.Background())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
				d.sample(context.Background())
			}
		}
	}()
}

// Close ends the open event streams (at the start of shutdown, so the
// admin server does not wait for them).
func (d *Dashboard) Close() {
	d.doneOnce.Do(func() { close(d.done) })
}

// Stop ends the sampling and the event streams.
func (d *Dashboard) Stop(ctx context.Context) error {
	d.Close()
	d.mu.Lock()
	running := d.running
	d.running = false
	d.mu.Unlock()
	if running {
		close(d.stop)
	}
	ch := make(chan struct{})
	go func() { d.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fxmonitor: stop dashboard: %w", ctx.Err())
	}
}

// sample reads the registry and the checks into the ring, then wakes the
// event streams.
func (d *Dashboard) sample(ctx context.Context) {
	if d.opts.Health != nil && d.watched() {
		for _, k := range kinds {
			d.opts.Health.HealthyContext(ctx, k) // refreshes stale on-request checks, as a probe would
		}
	}
	fams, err := d.opts.Gatherer.Gather()
	if err != nil && len(fams) == 0 {
		d.log.Warn("dashboard: gather metrics", zap.Error(err))
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ring.add(d.ring.read(fams, now))
	if d.opts.Health != nil {
		seen := map[string]bool{}
		for _, r := range d.opts.Health.Results() {
			h := append(d.history[r.Name], r.Status)
			if len(h) > historyLen {
				h = h[len(h)-historyLen:]
			}
			d.history[r.Name] = h
			seen[r.Name] = true
		}
		for name := range d.history {
			if !seen[name] {
				delete(d.history, name)
			}
		}
	}
	close(d.tick)
	d.tick = make(chan struct{})
}

// watched reports whether a page looked within the last 30s.
func (d *Dashboard) watched() bool {
	return d.viewers.Load() > 0 || time.Since(time.Unix(0, d.lastView.Load())) < 30*time.Second
}

// ServeHTTP serves the page and its endpoints under /dashboard/.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == DashboardPath {
		http.Redirect(w, r, DashboardPath+"/", http.StatusMovedPermanently)
		return
	}
	d.mux.ServeHTTP(w, r)
}

func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func (d *Dashboard) serveIndex(w http.ResponseWriter, _ *http.Request) {
	b, err := dist.ReadFile("dashboard/dist/index.html")
	if err != nil {
		http.Error(w, "fxmonitor: dashboard assets missing: run go generate ./fxmonitor", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; "+
		"style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

func (d *Dashboard) serveAsset(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	d.assets.ServeHTTP(w, r)
}

func (d *Dashboard) serveGraph(w http.ResponseWriter, _ *http.Request) {
	securityHeaders(w)
	writeJSON(w, struct {
		DOT string `json:"dot"`
	}{d.opts.Graph})
}

func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request) {
	d.lastView.Store(time.Now().UnixNano())
	securityHeaders(w)
	writeJSON(w, d.State(r.Context()))
}

func (d *Dashboard) serveEvents(w http.ResponseWriter, r *http.Request) {
	d.lastView.Store(time.Now().UnixNano())
	d.viewers.Add(1)
	defer d.viewers.Add(-1)
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // a stream outlives the server's WriteTimeout
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	retry := fmt.Sprintf("retry: %d\n\n", d.opts.Interval.Milliseconds())
	if _, err := w.Write([]byte(retry)); err != nil {
		return
	}
	for {
		d.mu.Lock()
		tick := d.tick
		d.mu.Unlock()
		b, err := json.Marshal(d.State(r.Context()))
		if err != nil {
			d.log.Warn("dashboard: encode state", zap.Error(err))
			return
		}
		var buf bytes.Buffer
		buf.WriteString("event: state\ndata: ")
		buf.Write(b)
		buf.WriteString("\n\n")
		if _, err := w.Write(buf.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-tick:
		case <-r.Context().Done():
			return
		case <-d.done:
			return
		}
	}
}

// sameOrigin accepts a request that a browser marked as coming from a page
// of this origin (Sec-Fetch-Site, else Origin); a request with neither is
// refused, since every current browser sends one of them with a POST.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" {
		return s == "same-origin"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	return false
}

func (d *Dashboard) serveRetry(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w)
	if !sameOrigin(r) {
		writeJSONStatus(w, http.StatusForbidden, map[string]string{"error": "cross-origin request refused: re-drive from the dashboard page"})
		return
	}
	d.mu.Lock()
	admin, ok := d.admin, d.adminOK
	d.mu.Unlock()
	if !ok {
		writeJSONStatus(w, http.StatusNotFound, map[string]string{"error": "the app has no event bus dead letters (fxevents)"})
		return
	}
	rec := callAdmin(r.Context(), admin, http.MethodPost, "/events/dead/"+url.PathEscape(r.PathValue("id"))+"/retry")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rec.code)
	_, _ = w.Write(rec.body.Bytes())
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// memWriter records an in-process call to an admin route.
type memWriter struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (m *memWriter) Header() http.Header { return m.h }
func (m *memWriter) Write(b []byte) (int, error) {
	if m.code == 0 {
		m.code = http.StatusOK
	}
	return m.body.Write(b)
}
func (m *memWriter) WriteHeader(code int) {
	if m.code == 0 {
		m.code = code
	}
}

func callAdmin(ctx context.Context, mux *http.ServeMux, method, target string) *memWriter {
	rec := &memWriter{h: http.Header{}}
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		rec.code = http.StatusBadRequest
		return rec
	}
	mux.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	return rec
}
