package health

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxmonitor/internal/confkey"
)

// Options configures New. The zero value is ready to use.
type Options struct {
	// Timeout applies to checks without their own (default 2s).
	Timeout time.Duration
	// TTL is how long an on-request check's result is served from cache (default 1s).
	TTL time.Duration
	// WatchInterval is how often, while an OnChange listener is registered,
	// stale on-request checks are run in the background so listeners hear of
	// changes without probe traffic (default 5s).
	WatchInterval time.Duration
	// Critical overrides the Critical flag of checks by name (matched like
	// config keys: case-insensitively, with "-", "." and " " read as "_").
	// A name that matches no check is an error. fxmonitor.Module fills it
	// from MARTY_MONITOR_CHECKS_<NAME>_CRITICAL.
	Critical map[string]bool
	// Registerer receives the marty_health_check_* metrics; nil: metrics
	// are not registered.
	Registerer prometheus.Registerer
	// Logger logs status transitions; nil: zap.NewNop().
	Logger *zap.Logger
	// Stopping turns readiness false when shutdown begins (BeginShutdown
	// runs on its OnBegin); nil: call BeginShutdown yourself.
	// It also keeps readiness false (verdict "starting") until every server
	// declared with its ExpectStart listens (Stopping.Started), so no probe
	// reports the pod ready before the last listener is open.
	Stopping *fxcore.Stopping
}

// Health runs the app's health checks and aggregates them per probe kind.
// Checks with an Interval run in the background between Start and Stop and
// are served from cache; the others run when asked, at most one run of a
// check at a time, their result cached for the TTL. A check that does not
// return within its Timeout fails with a timeout error. A check flips to
// failing after FailureThreshold consecutive failures and back to passing on
// the first success.
//
// A kind is healthy when all its critical checks pass. Readiness is also
// false until startup has passed once (startup is latched) and the app has
// started (every server declared to Options.Stopping listens), and from the moment shutdown begins
// (BeginShutdown, or Options.Stopping).
type Health struct {
	log     *zap.Logger
	timeout time.Duration
	ttl     time.Duration
	watch   time.Duration
	checks  []*checkState
	byKind  [len(kinds)][]*checkState

	ctx    context.Context
	cancel context.CancelFunc
	runMu  sync.Mutex // guards stopped and wg.Add
	stop   bool
	wg     sync.WaitGroup

	startupDone atomic.Bool
	stopping    atomic.Bool
	stopper     *fxcore.Stopping // Options.Stopping: its Started gates readiness

	mu         sync.Mutex
	agg        [len(kinds)]bool
	listeners  []func(Kind, bool)
	queue      []aggChange
	delivering bool

	status   *prometheus.GaugeVec
	failing  *prometheus.GaugeVec
	duration *prometheus.HistogramVec
}

type aggChange struct {
	kind    Kind
	healthy bool
}

// checkState is a check and its last result.
type checkState struct {
	Check
	background bool
	gauges     [len(kinds)]prometheus.Gauge
	failing    prometheus.Gauge // 1 while the status is StatusFailing
	observe    prometheus.Observer
	inflight   atomic.Bool // Func is still running (possibly past its timeout)

	mu        sync.Mutex
	status    Status
	err       error // error of the last run, nil when it passed
	lastErr   error // most recent error ever
	lastErrAt time.Time
	dur       time.Duration
	lastRun   time.Time
	since     time.Time
	fails     int
	running   bool
	done      chan struct{}
}

// The metrics of Health, by name: they label the error when one cannot be
// registered.
const (
	metricStatus   = "marty_health_check_status"
	metricFailing  = "marty_health_check_failing"
	metricDuration = "marty_health_check_duration_seconds"
)

// New validates the checks and returns their Health. Call Start to run the
// background checks and Stop to end them; fxmonitor.Module does both.
func New(checks []Check, opts Options) (*Health, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.WatchInterval <= 0 {
		opts.WatchInterval = 5 * time.Second
	}
	checks, err := overrideCritical(checks, opts.Critical)
	if err != nil {
		return nil, err
	}
	h := &Health{log: opts.Logger, timeout: opts.Timeout, ttl: opts.TTL, watch: opts.WatchInterval, stopper: opts.Stopping}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if err := h.newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range checks {
		if err := c.Validate(); err != nil {
			return nil, fmt.Errorf("fxmonitor: %w", err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("fxmonitor: two health checks are named %q; names must be unique", c.Name)
		}
		seen[c.Name] = true
		h.add(c)
	}
	for _, list := range append(h.byKind[:], h.checks) {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	for i := range kinds {
		h.agg[i] = h.aggregate(kinds[i])
		if i == 0 && h.agg[0] {
			h.startupDone.Store(true)
		}
	}
	if opts.Stopping != nil {
		opts.Stopping.OnBegin(h.BeginShutdown)
	}
	return h, nil
}

func (h *Health) newMetrics(reg prometheus.Registerer) error {
	h.status = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: metricStatus,
		Help: "Health check status per probe kind: 1 passing, 0 failing or not yet known.",
	}, []string{"check", "kind"})
	h.failing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: metricFailing,
		Help: "1 while a health check is failing (past its failure threshold), 0 while passing or not yet known; critical says whether its failure fails its probes or only degrades them.",
	}, []string{"check", "critical"})
	h.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    metricDuration,
		Help:    "Duration of health check runs.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"check"})
	if reg == nil {
		return nil
	}
	for name, c := range map[string]prometheus.Collector{metricStatus: h.status, metricFailing: h.failing, metricDuration: h.duration} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("fxmonitor: register health metric %q: %w", name, err)
		}
	}
	return nil
}

// add sets up a valid check's state, gauges and place in its kinds.
func (h *Health) add(c Check) {
	if c.Timeout == 0 {
		c.Timeout = h.timeout
	}
	if c.FailureThreshold == 0 {
		c.FailureThreshold = 1
	}
	s := &checkState{Check: c, background: c.Interval > 0, observe: h.duration.WithLabelValues(c.Name),
		failing: h.failing.WithLabelValues(c.Name, strconv.FormatBool(c.Critical))}
	s.failing.Set(0)
	for i, k := range kinds {
		if c.Kinds&k != 0 {
			s.gauges[i] = h.status.WithLabelValues(c.Name, kindNames[i])
			s.gauges[i].Set(0)
			h.byKind[i] = append(h.byKind[i], s)
		}
	}
	h.checks = append(h.checks, s)
}

// overrideCritical returns checks with the Critical flags of over applied.
func overrideCritical(checks []Check, over map[string]bool) ([]Check, error) {
	if len(over) == 0 {
		return checks, nil
	}
	out := slices.Clone(checks)
	for name, critical := range over {
		key, found := confkey.Key(name), false
		for i := range out {
			if confkey.Key(out[i].Name) == key {
				out[i].Critical, found = critical, true
			}
		}
		if !found {
			names := make([]string, 0, len(out))
			for _, c := range out {
				names = append(names, c.Name)
			}
			sort.Strings(names)
			return nil, fmt.Errorf("fxmonitor: the critical override of %q (%s) matches no health check (the checks are: %s)",
				name, fxcore.EnvName("monitor", "checks."+confkey.Key(name)+".critical"), strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Start runs the background checks (those with an Interval): each runs at
// once and then every Interval until Stop. While OnChange listeners are
// registered it also refreshes the on-request checks every WatchInterval.
// It never blocks and returns nil; its signature is the lifecycle's.
func (h *Health) Start(context.Context) error {
	for _, s := range h.checks {
		if !s.background {
			continue
		}
		if !h.spawn(func() { h.loop(s) }) {
			return nil
		}
	}
	h.spawn(h.watchLoop)
	if h.stopper != nil {
		started := h.stopper.Started() // after the app's construction: its servers are declared
		h.spawn(func() {
			select {
			case <-started:
				h.recompute() // readiness may turn on: tell the listeners
			case <-h.ctx.Done():
			}
		})
	}
	return nil
}

// appStarted reports whether every server declared to the app's Stopping
// listens, or there is no Stopping.
func (h *Health) appStarted() bool {
	if h.stopper == nil {
		return true
	}
	select {
	case <-h.stopper.Started():
		return true
	default:
		return false
	}
}

func (h *Health) watchLoop() {
	t := time.NewTicker(h.watch)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		n := len(h.listeners)
		h.mu.Unlock()
		if n == 0 {
			continue
		}
		for _, k := range kinds {
			h.evaluate(h.ctx, k)
		}
		h.recompute()
	}
}

// Stop ends the background checks and waits, within ctx, for running checks
// to return (their context is cancelled).
func (h *Health) Stop(ctx context.Context) error {
	h.runMu.Lock()
	h.stop = true
	h.runMu.Unlock()
	h.cancel()
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fxmonitor: health checks still running at the stop deadline: %w", ctx.Err())
	}
}

// spawn runs fn in a goroutine tracked by Stop, unless stopped.
func (h *Health) spawn(fn func()) bool {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	if h.stop {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn()
	}()
	return true
}

// HealthyContext is Healthy with a context that bounds waiting for a check
// another caller is running.
func (h *Health) HealthyContext(ctx context.Context, kind Kind) bool {
	if kind.index() < 0 {
		return false
	}
	h.evaluate(ctx, kind)
	h.recompute()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.agg[kind.index()]
}

// OnChange registers fn to be called on each transition of a kind's
// aggregate health, in order, from the goroutine that caused it (keep fn
// short; it may call Healthy). Readiness going false when shutdown begins is
// reported at once. fn is not called with the current state: read it with
// Healthy.
func (h *Health) OnChange(fn func(kind Kind, healthy bool)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.listeners = append(h.listeners[:len(h.listeners):len(h.listeners)], fn)
}

// BeginShutdown turns readiness false for good. Module calls it when
// *fxcore.Stopping begins.
func (h *Health) BeginShutdown() {
	if h.stopping.Swap(true) {
		return
	}
	h.log.Info("shutdown has begun: readiness is now failing")
	h.recompute()
}

// ShuttingDown reports whether BeginShutdown was called.
func (h *Health) ShuttingDown() bool { return h.stopping.Load() }

// StartupDone reports whether startup has passed (it stays passed).
func (h *Health) StartupDone() bool { return h.startupDone.Load() }

// Results returns every check's last known result, by name, without running
// anything.
func (h *Health) Results() []Result {
	out := make([]Result, 0, len(h.checks))
	for _, s := range h.checks {
		out = append(out, s.result())
	}
	return out
}

// Healthy reports whether the critical checks of kind pass, running stale
// on-request checks first. Readiness is false until startup has passed and
// once shutdown has begun. A kind with no checks is healthy.
func (h *Health) Healthy(kind Kind) bool {
	return h.HealthyContext(context.Background(), kind)
}
