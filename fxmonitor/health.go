package fxmonitor

import (
	"context"
	"errors"
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
)

// kinds lists the probe kinds in index order.
var kinds = [...]Kind{Startup, Liveness, Readiness}

// String returns "startup", "liveness", "readiness", or the set joined by "|".
func (k Kind) String() string {
	var out string
	for i, one := range kinds {
		if k&one != 0 {
			if out != "" {
				out += "|"
			}
			out += kindNames[i]
		}
	}
	if out == "" {
		return fmt.Sprintf("Kind(%d)", uint8(k))
	}
	return out
}

var kindNames = [...]string{"startup", "liveness", "readiness"}

// index returns the position of a single kind in kinds, or -1.
func (k Kind) index() int {
	switch k {
	case Startup:
		return 0
	case Liveness:
		return 1
	case Readiness:
		return 2
	}
	return -1
}

// CheckStatus is a check's status.
type CheckStatus uint8

// The check statuses. A check is Unknown until it first passes or reaches
// its FailureThreshold.
const (
	CheckUnknown CheckStatus = iota
	CheckPassing
	CheckFailing
)

// String returns "unknown", "passing" or "failing".
func (s CheckStatus) String() string {
	switch s {
	case CheckPassing:
		return "passing"
	case CheckFailing:
		return "failing"
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (s CheckStatus) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *CheckStatus) UnmarshalText(b []byte) error {
	switch string(b) {
	case "passing":
		*s = CheckPassing
	case "failing":
		*s = CheckFailing
	case "unknown":
		*s = CheckUnknown
	default:
		return fmt.Errorf("fxmonitor: unknown check status %q", b)
	}
	return nil
}

// HealthOptions configures NewHealth.
type HealthOptions struct {
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
	// A name that matches no check is an error. Module fills it from
	// MARTY_MONITOR_CHECKS_<NAME>_CRITICAL.
	Critical map[string]bool
	// Registerer receives the marty_health_check_* metrics (nil: none).
	Registerer prometheus.Registerer
	// Logger logs status transitions (nil: none).
	Logger *zap.Logger
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
// false until startup has passed once (startup is latched) and from the
// moment shutdown begins (BeginShutdown, wired to *fxcore.Stopping).
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
	failing    prometheus.Gauge // 1 while the status is CheckFailing
	observe    prometheus.Observer
	inflight   atomic.Bool // Func is still running (possibly past its timeout)

	mu        sync.Mutex
	status    CheckStatus
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

// CheckResult is a check's last known result.
type CheckResult struct {
	Name                string        `json:"name"`
	Kinds               string        `json:"kinds"`
	Critical            bool          `json:"critical"`
	Status              CheckStatus   `json:"status"`
	Error               string        `json:"error,omitempty"`
	LastError           string        `json:"last_error,omitempty"`
	LastErrorAt         *time.Time    `json:"last_error_at,omitempty"`
	Duration            time.Duration `json:"-"`
	DurationSeconds     float64       `json:"duration_seconds"`
	LastRun             *time.Time    `json:"last_run,omitempty"`
	Since               *time.Time    `json:"since,omitempty"`
	ConsecutiveFailures int           `json:"consecutive_failures"`
	Interval            string        `json:"interval,omitempty"`
}

// NewHealth validates the checks and returns their Health. Call Start to run
// the background checks and Stop to end them; Module does both.
func NewHealth(checks []Check, opts HealthOptions) (*Health, error) {
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
	h := &Health{log: opts.Logger, timeout: opts.Timeout, ttl: opts.TTL, watch: opts.WatchInterval}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.status = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "marty_health_check_status",
		Help: "Health check status per probe kind: 1 passing, 0 failing or not yet known.",
	}, []string{"check", "kind"})
	h.failing = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "marty_health_check_failing",
		Help: "1 while a health check is failing (past its failure threshold), 0 while passing or not yet known; critical says whether its failure fails its probes or only degrades them.",
	}, []string{"check", "critical"})
	h.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "marty_health_check_duration_seconds",
		Help:    "Duration of health check runs.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"check"})
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{h.status, h.failing, h.duration} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("fxmonitor: register health metrics: %w", err)
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range checks {
		if c.Name == "" || c.Func == nil || c.Kinds == 0 {
			return nil, fmt.Errorf("fxmonitor: check %q needs a Name, Kinds and a Func", c.Name)
		}
		if c.Kinds&^(Startup|Liveness|Readiness) != 0 {
			return nil, fmt.Errorf("fxmonitor: check %q: unknown kinds %d", c.Name, c.Kinds)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("fxmonitor: two health checks are named %q; names must be unique", c.Name)
		}
		if c.Timeout < 0 || c.Interval < 0 || c.FailureThreshold < 0 {
			return nil, fmt.Errorf("fxmonitor: check %q: negative Timeout, Interval or FailureThreshold", c.Name)
		}
		seen[c.Name] = true
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
	for _, list := range append(h.byKind[:], h.checks) {
		sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	}
	for i := range kinds {
		h.agg[i] = h.aggregate(kinds[i])
		if i == 0 && h.agg[0] {
			h.startupDone.Store(true)
		}
	}
	return h, nil
}

// overrideCritical returns checks with the Critical flags of over applied.
func overrideCritical(checks []Check, over map[string]bool) ([]Check, error) {
	if len(over) == 0 {
		return checks, nil
	}
	out := slices.Clone(checks)
	for name, critical := range over {
		key, found := configKey(name), false
		for i := range out {
			if configKey(out[i].Name) == key {
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
				name, fxcore.EnvName("monitor", "checks."+configKey(name)+".critical"), strings.Join(names, ", "))
		}
	}
	return out, nil
}

// Start runs the background checks (those with an Interval): each runs at
// once and then every Interval until Stop. While OnChange listeners are
// registered it also refreshes the on-request checks every WatchInterval.
func (h *Health) Start() {
	for _, s := range h.checks {
		if !s.background {
			continue
		}
		if !h.spawn(func() { h.loop(s) }) {
			return
		}
	}
	h.spawn(h.watchLoop)
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

func (h *Health) loop(s *checkState) {
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		dur, err := h.execute(s)
		if h.ctx.Err() != nil {
			return
		}
		if h.record(s, err, dur) {
			h.recompute()
		}
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
	}
}

var (
	errStopped       = errors.New("health checks are stopped")
	errStillRunning  = errors.New("previous run has not returned yet")
	errCheckPanicked = errors.New("check panicked")
)

// execute runs the check's Func bounded by its Timeout. A Func that ignores
// its context is abandoned at the timeout (and not run again until it
// returns).
func (h *Health) execute(s *checkState) (time.Duration, error) {
	if !s.inflight.CompareAndSwap(false, true) {
		return 0, fmt.Errorf("timed out after %s: %w", s.Timeout, errStillRunning)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(h.ctx, s.Timeout)
	defer cancel()
	done := make(chan error, 1)
	if !h.spawn(func() {
		err := call(ctx, s.Func)
		s.inflight.Store(false)
		done <- err
	}) {
		s.inflight.Store(false)
		return 0, errStopped
	}
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		if h.ctx.Err() != nil {
			return time.Since(start), errStopped
		}
		select {
		case err = <-done: // it returned at the same moment
		default:
			return time.Since(start), fmt.Errorf("timed out after %s", s.Timeout)
		}
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && h.ctx.Err() == nil {
		if err == context.DeadlineExceeded { //nolint:errorlint // the bare context error says nothing more
			err = fmt.Errorf("timed out after %s", s.Timeout)
		} else {
			err = fmt.Errorf("timed out after %s: %w", s.Timeout, err)
		}
	}
	return time.Since(start), err
}

func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", errCheckPanicked, r)
		}
	}()
	return fn(ctx)
}

// record stores a run's result, logs and exports a transition, and reports
// whether there was one (the caller then recomputes the aggregates).
func (h *Health) record(s *checkState, err error, dur time.Duration) bool {
	now := time.Now()
	s.observe.Observe(dur.Seconds())
	s.mu.Lock()
	s.lastRun, s.dur, s.err = now, dur, err
	old := s.status
	if err == nil {
		s.fails = 0
		s.status = CheckPassing
	} else {
		s.fails++
		s.lastErr, s.lastErrAt = err, now
		if s.fails >= s.FailureThreshold {
			s.status = CheckFailing
		}
	}
	changed := s.status != old
	if changed {
		s.since = now
	}
	status, fails := s.status, s.fails
	s.mu.Unlock()
	if !changed {
		return false
	}
	v := 0.0
	if status == CheckPassing {
		v = 1
	}
	for _, g := range s.gauges {
		if g != nil {
			g.Set(v)
		}
	}
	if status == CheckFailing {
		s.failing.Set(1)
	} else {
		s.failing.Set(0)
	}
	fields := []zap.Field{zap.String("check", s.Name), zap.String("kinds", s.Kinds.String()),
		zap.Bool("critical", s.Critical), zap.String("from", old.String()), zap.String("to", status.String())}
	switch {
	case status == CheckFailing:
		h.log.Warn("health check failing", append(fields, zap.Int("consecutive_failures", fails), zap.Error(err))...)
	case old == CheckFailing:
		h.log.Info("health check recovered", fields...)
	default:
		h.log.Info("health check passing", fields...)
	}
	return true
}

// refresh runs an on-request check whose cached result is older than the
// TTL; a caller finding a run in progress waits for it (or for ctx).
func (h *Health) refresh(ctx context.Context, s *checkState, now time.Time) {
	s.mu.Lock()
	if s.background || (!s.lastRun.IsZero() && now.Sub(s.lastRun) < h.ttl) {
		s.mu.Unlock()
		return
	}
	if s.running {
		ch := s.done
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	s.running = true
	ch := make(chan struct{})
	s.done = ch
	s.mu.Unlock()
	dur, err := h.execute(s)
	changed := !errors.Is(err, errStopped) && h.record(s, err, dur)
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	close(ch)
	// After the waiters are released: a listener may call Healthy.
	if changed {
		h.recompute()
	}
}

// stale reports whether an on-request check needs a run.
func (h *Health) stale(s *checkState, now time.Time) bool {
	if s.background {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running || s.lastRun.IsZero() || now.Sub(s.lastRun) >= h.ttl
}

// evaluate brings the checks of a kind up to date: stale on-request checks
// run concurrently. With every result cached it does not allocate.
func (h *Health) evaluate(ctx context.Context, kind Kind) {
	i := kind.index()
	if i < 0 {
		return
	}
	if kind == Startup && h.startupDone.Load() {
		return
	}
	if kind == Readiness && !h.startupDone.Load() {
		h.evaluate(ctx, Startup)
	}
	now := time.Now()
	n := 0
	for _, s := range h.byKind[i] {
		if h.stale(s, now) {
			n++
		}
	}
	if n == 0 {
		return
	}
	h.refreshAll(ctx, h.byKind[i], now, n)
}

func (h *Health) refreshAll(ctx context.Context, checks []*checkState, now time.Time, n int) {
	var wg sync.WaitGroup
	for _, s := range checks {
		if !h.stale(s, now) {
			continue
		}
		n--
		if n == 0 { // the last one runs in this goroutine
			h.refresh(ctx, s, now)
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.refresh(ctx, s, now)
		}()
	}
	wg.Wait()
}

// aggregate computes a kind's health from the cached statuses.
func (h *Health) aggregate(kind Kind) bool {
	i := kind.index()
	switch kind {
	case Startup:
		if h.startupDone.Load() {
			return true
		}
	case Readiness:
		if h.stopping.Load() || !h.startupDone.Load() {
			return false
		}
	}
	for _, s := range h.byKind[i] {
		if !s.Critical {
			continue
		}
		s.mu.Lock()
		st := s.status
		s.mu.Unlock()
		if st != CheckPassing {
			return false
		}
	}
	return true
}

// recompute updates the aggregates and notifies listeners of transitions,
// in order, outside any lock a listener could need.
func (h *Health) recompute() {
	h.mu.Lock()
	for i, k := range kinds {
		v := h.aggregate(k)
		if k == Startup && v && !h.startupDone.Load() {
			h.startupDone.Store(true)
			h.log.Info("startup checks passed")
		}
		if v != h.agg[i] {
			h.agg[i] = v
			h.queue = append(h.queue, aggChange{k, v})
		}
	}
	if h.delivering || len(h.queue) == 0 {
		h.mu.Unlock()
		return
	}
	h.delivering = true
	for len(h.queue) > 0 {
		c := h.queue[0]
		h.queue = h.queue[1:]
		fns := h.listeners
		h.mu.Unlock()
		for _, fn := range fns {
			fn(c.kind, c.healthy)
		}
		h.mu.Lock()
	}
	h.delivering = false
	h.mu.Unlock()
}

// Healthy reports whether the critical checks of kind pass, running stale
// on-request checks first. Readiness is false until startup has passed and
// once shutdown has begun. A kind with no checks is healthy.
func (h *Health) Healthy(kind Kind) bool {
	return h.HealthyContext(context.Background(), kind)
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
func (h *Health) Results() []CheckResult {
	out := make([]CheckResult, 0, len(h.checks))
	for _, s := range h.checks {
		out = append(out, s.result())
	}
	return out
}

func (s *checkState) result() CheckResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := CheckResult{
		Name: s.Name, Kinds: s.Kinds.String(), Critical: s.Critical, Status: s.status,
		Duration: s.dur, DurationSeconds: s.dur.Seconds(), ConsecutiveFailures: s.fails,
	}
	if s.background {
		r.Interval = s.Interval.String()
	}
	if s.err != nil {
		r.Error = s.err.Error()
	}
	if s.lastErr != nil {
		r.LastError = s.lastErr.Error()
		t := s.lastErrAt
		r.LastErrorAt = &t
	}
	if !s.lastRun.IsZero() {
		t := s.lastRun
		r.LastRun = &t
	}
	if !s.since.IsZero() {
		t := s.since
		r.Since = &t
	}
	return r
}
