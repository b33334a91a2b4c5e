package dashboard

//go:generate sh build.sh

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/alert"
	"github.com/martyfx/martyfx/fxmonitor/breaker"
	"github.com/martyfx/martyfx/fxmonitor/health"
	"github.com/martyfx/martyfx/fxmonitor/internal/view"
)

// dist holds the page and its pinned libraries (uPlot, Viz.js), built by
// `go generate ./fxmonitor/dashboard` (build.sh) and committed.
//
//go:embed dist
var dist embed.FS

// Path is where the dashboard is served: fxmonitor.Module mounts it there
// on the admin server, and the page's links assume it.
const Path = "/dashboard"

// historyLen is how many past statuses of each check the page shows.
const historyLen = 30

// Options are New's inputs; only Gatherer is required.
type Options struct {
	// Info is the service's identity.
	Info fxcore.ServiceInfo
	// Health, Breakers and Alerts feed their panels; nil hides the panel.
	Health   *health.Health
	Breakers *breaker.Breakers
	Alerts   *alert.Evaluator
	// Gatherer is sampled for the RED charts and the panels' stats.
	Gatherer prometheus.Gatherer
	// Graph is the app's dependency graph in DOT (fx.DotGraph); "" hides it.
	Graph string
	// Interval is the sampling and push period (default 2s).
	Interval time.Duration
	// Window is the history kept for the charts (default 5m).
	Window time.Duration
	// Panels are the modules' panels (fxmonitor.AsPanel), shown by their
	// Order.
	Panels []Panel
	// Logger logs sampling problems; nil: zap.NewNop().
	Logger *zap.Logger
	// Stopping ends the open event streams when shutdown begins (Close runs
	// on its OnBegin), so the admin server does not wait for them; nil:
	// Stop ends them.
	Stopping *fxcore.Stopping
}

// Dashboard is the operations dashboard: an embedded page served under Path
// with its own endpoints:
//
//	GET /dashboard/               the page
//	GET /dashboard/assets/{file}  its scripts, styles and licences
//	GET /dashboard/api/state      the state document (JSON)
//	GET /dashboard/api/events     the state, pushed every Interval (server-sent events)
//	GET /dashboard/api/graph      the Fx dependency graph ({"dot": "..."})
//
// It samples the registry every Interval into a ring buffer covering Window,
// from which it computes rate, error ratio, p50 and p99 per HTTP route and
// gRPC method, and the panels' stats. It changes nothing: a panel's row
// actions call the module's own admin routes from the page.
type Dashboard struct {
	opts    Options
	log     *zap.Logger
	started time.Time
	smooth  int
	mux     *http.ServeMux
	assets  http.Handler

	mu      sync.Mutex
	ring    *ring
	history map[string][]health.Status
	tick    chan struct{} // closed and replaced after each sample
	gen     uint64        // samples taken

	rowsMu  sync.Mutex // one reading of the panels' rows at a time
	rows    []tableRows
	rowsGen uint64

	viewers  atomic.Int64 // open event streams
	lastView atomic.Int64 // unix nanos of the last state request
	done     chan struct{}
	doneOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
	running  bool
}

// New validates the options and returns a dashboard; call Start to sample
// and Stop to end.
func New(opts Options) (*Dashboard, error) {
	if opts.Gatherer == nil {
		return nil, errors.New("fxmonitor: the dashboard needs a prometheus.Gatherer to sample")
	}
	if err := validatePanels(opts.Panels); err != nil {
		return nil, fmt.Errorf("fxmonitor: dashboard panels: %w", err)
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Window < opts.Interval {
		opts.Window = max(5*time.Minute, opts.Interval)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, fmt.Errorf("fxmonitor: dashboard assets: %w", err)
	}
	opts.Panels = slices.Clone(opts.Panels)
	slices.SortStableFunc(opts.Panels, func(a, b Panel) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Name, b.Name))
	})
	wanted := map[string]bool{}
	for _, p := range opts.Panels {
		for _, s := range p.Stats {
			wanted[s.Metric] = true
		}
	}
	d := &Dashboard{
		opts:    opts,
		log:     opts.Logger,
		started: time.Now(),
		smooth:  max(1, int((10*time.Second)/opts.Interval)),
		ring:    newRing(int(opts.Window/opts.Interval)+1, wanted),
		history: map[string][]health.Status{},
		tick:    make(chan struct{}),
		done:    make(chan struct{}),
		stop:    make(chan struct{}),
		assets:  http.StripPrefix(Path+"/assets/", http.FileServerFS(sub)),
	}
	d.mux = http.NewServeMux()
	d.mux.HandleFunc("GET "+Path+"/{$}", d.serveIndex)
	d.mux.HandleFunc("GET "+Path+"/assets/", d.serveAsset)
	d.mux.HandleFunc("GET "+Path+"/api/state", d.serveState)
	d.mux.HandleFunc("GET "+Path+"/api/events", d.serveEvents)
	d.mux.HandleFunc("GET "+Path+"/api/graph", d.serveGraph)
	if opts.Stopping != nil {
		opts.Stopping.OnBegin(d.Close)
	}
	return d, nil
}

// Start samples the registry at once and then every Interval until Stop. It
// never blocks and returns nil; its signature is the lifecycle's.
func (d *Dashboard) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return nil
	}
	d.running = true
	d.mu.Unlock()
	d.sample(ctx)
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
	return nil
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
	if h := d.opts.Health; h != nil && d.watched() {
		for _, k := range []health.Kind{health.Startup, health.Liveness, health.Readiness} {
			h.HealthyContext(ctx, k) // refreshes stale on-request checks, as a probe would
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
	d.gen++
	close(d.tick)
	d.tick = make(chan struct{})
}

// watched reports whether a page looked within the last 30s.
func (d *Dashboard) watched() bool {
	return d.viewers.Load() > 0 || time.Since(time.Unix(0, d.lastView.Load())) < 30*time.Second
}

// ServeHTTP serves the page and its endpoints under Path.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == Path {
		http.Redirect(w, r, Path+"/", http.StatusMovedPermanently)
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
	b, err := dist.ReadFile("dist/index.html")
	if err != nil {
		http.Error(w, "fxmonitor: dashboard assets missing: run go generate ./fxmonitor/dashboard", http.StatusInternalServerError)
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
	view.WriteJSON(w, struct {
		DOT string `json:"dot"`
	}{d.opts.Graph})
}

func (d *Dashboard) serveState(w http.ResponseWriter, r *http.Request) {
	d.lastView.Store(time.Now().UnixNano())
	securityHeaders(w)
	view.WriteJSON(w, d.state(r.Context(), true))
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
		b, err := json.Marshal(d.state(r.Context(), false))
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
