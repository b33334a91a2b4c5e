package alert

import (
	"context"
	"fmt"
	"maps"

	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
)

// Clock tells the time to the alert evaluator; tests give a controllable one.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// resolvedRetention is how long a resolved alert stays listed, as in Prometheus.
const resolvedRetention = 15 * time.Minute

// Options configures New. The zero value is ready to use.
type Options struct {
	// Interval between evaluations in the background (default 15s).
	Interval time.Duration
	// Resend is how often a firing alert is sent again (default 1m).
	Resend time.Duration
	// Clock is the evaluation time (default the system clock).
	Clock Clock
	// Notifiers receive the alerts.
	Notifiers []Notifier
	// Labels are added to every alert (fxmonitor.Module adds service).
	Labels map[string]string
	// Registerer receives marty_alerts and marty_alert_notifications_total;
	// nil: metrics are not registered.
	Registerer prometheus.Registerer
	// Logger logs evaluation problems; nil: zap.NewNop().
	Logger *zap.Logger
	// QueueSize bounds the batches waiting per notifier (default 64); when
	// full the oldest is dropped.
	QueueSize int
}

// Evaluator evaluates alert rules against a Prometheus Gatherer,
// in-process, with Prometheus' states (inactive, pending, firing,
// resolved), and hands firing and resolved alerts to notifiers without ever
// waiting for them.
type Evaluator struct {
	opts     Options
	gatherer prometheus.Gatherer
	log      *zap.Logger
	rules    []*ruleState

	mu      sync.Mutex // one evaluation at a time; guards rule states and closed
	closed  bool
	disp    []*dispatcher
	stopEv  context.CancelFunc // ends the evaluation loop
	stopTx  context.CancelFunc // ends sending
	evDone  chan struct{}
	txGroup sync.WaitGroup

	alertsGauge *prometheus.GaugeVec
	notified    *prometheus.CounterVec
}

type ruleState struct {
	rule    Rule
	active  map[string]*alertState // by series key
	samples map[string][]sample    // rate() history by series key
}

type alertState struct {
	Alert
	lastSent time.Time
}

type sample struct {
	t time.Time
	v float64
}

// New validates the rules and returns their evaluator. Call Start to
// evaluate every Interval and Stop to end; fxmonitor.Module does both.
func New(rules []Rule, g prometheus.Gatherer, opts Options) (*Evaluator, error) {
	if g == nil {
		return nil, fmt.Errorf("fxmonitor: alert rules need a prometheus.Gatherer to read")
	}
	if opts.Interval <= 0 {
		opts.Interval = 15 * time.Second
	}
	if opts.Resend <= 0 {
		opts.Resend = time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = systemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 64
	}
	a := &Evaluator{opts: opts, gatherer: g, log: opts.Logger}
	for _, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("fxmonitor: %w", err)
		}
		if r.Severity == "" {
			r.Severity = "warning"
		}
		r.Labels = maps.Clone(r.Labels)
		a.rules = append(a.rules, &ruleState{rule: r, active: map[string]*alertState{}, samples: map[string][]sample{}})
	}
	a.alertsGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "marty_alerts",
		Help: "Alerts of the in-process rules by state (pending, firing).",
	}, []string{"alertname", "state"})
	a.notified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "marty_alert_notifications_total",
		Help: "Alert batches handed to notifiers by result: sent, failed, dropped (queue full).",
	}, []string{"notifier", "result"})
	if opts.Registerer != nil {
		for name, c := range map[string]prometheus.Collector{"marty_alerts": a.alertsGauge, "marty_alert_notifications_total": a.notified} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("fxmonitor: register alert metric %q: %w", name, err)
			}
		}
	}
	for _, n := range opts.Notifiers {
		a.disp = append(a.disp, &dispatcher{n: n, q: make(chan []Alert, opts.QueueSize), log: a.log,
			sent: a.notified.WithLabelValues(n.Name(), "sent"), failed: a.notified.WithLabelValues(n.Name(), "failed"),
			dropped: a.notified.WithLabelValues(n.Name(), "dropped")})
	}
	return a, nil
}

// Rules returns the rules as registered (Severity defaulted).
func (a *Evaluator) Rules() []Rule {
	out := make([]Rule, len(a.rules))
	for i, r := range a.rules {
		out[i] = r.rule
	}
	return out
}

// Start starts the notifiers' dispatchers and, when there are rules, the
// evaluation loop (first evaluation after one Interval). It never blocks
// and returns nil; its signature is the lifecycle's.
func (a *Evaluator) Start(context.Context) error {
	evCtx, stopEv := context.WithCancel(context.Background())
	txCtx, stopTx := context.WithCancel(context.Background())
	a.stopEv, a.stopTx = stopEv, stopTx
	for _, d := range a.disp {
		a.txGroup.Add(1)
		go func() { defer a.txGroup.Done(); d.run(txCtx) }()
	}
	a.evDone = make(chan struct{})
	go func() {
		defer close(a.evDone)
		if len(a.rules) == 0 {
			return
		}
		t := time.NewTicker(a.opts.Interval)
		defer t.Stop()
		for {
			select {
			case <-evCtx.Done():
				return
			case <-t.C:
				a.Evaluate()
			}
		}
	}()
	return nil
}

// Stop ends the evaluation loop, then lets the notifiers deliver what is
// queued until ctx ends.
func (a *Evaluator) Stop(ctx context.Context) error {
	if a.stopEv == nil {
		return nil
	}
	a.stopEv()
	<-a.evDone
	a.mu.Lock()
	a.closed = true
	for _, d := range a.disp {
		close(d.q)
	}
	a.mu.Unlock()
	done := make(chan struct{})
	go func() { a.txGroup.Wait(); close(done) }()
	select {
	case <-done:
		a.stopTx()
		return nil
	case <-ctx.Done():
		a.stopTx()
		<-done
		return fmt.Errorf("fxmonitor: alert notifiers still sending at the stop deadline: %w", ctx.Err())
	}
}

// Evaluate evaluates every rule once at the clock's time and queues the
// alerts to send; it never waits for a notifier. The background loop calls
// it every Interval; tests call it after moving their Clock.
func (a *Evaluator) Evaluate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.opts.Clock.Now()
	mfs, err := a.gatherer.Gather()
	if err != nil {
		// Gather returns what it could alongside the error.
		a.log.Warn("alert evaluation: gathering metrics", zap.Error(err))
	}
	byName := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	var batch []Alert
	counts := map[[2]string]float64{}
	for _, rs := range a.rules {
		batch = a.evalRule(rs, byName, now, batch)
		for _, st := range rs.active {
			if st.State == Pending || st.State == Firing {
				counts[[2]string{rs.rule.Name, string(st.State)}]++
			}
		}
	}
	a.alertsGauge.Reset()
	for k, v := range counts {
		a.alertsGauge.WithLabelValues(k[0], k[1]).Set(v)
	}
	if len(batch) == 0 || a.closed {
		return
	}
	for _, d := range a.disp {
		d.enqueue(batch)
	}
}

// evalRule moves the rule's alerts through their states and appends what to send.
func (a *Evaluator) evalRule(rs *ruleState, fams map[string]*dto.MetricFamily, now time.Time, batch []Alert) []Alert {
	r := rs.rule
	seen := map[string]bool{}
	for _, s := range a.series(rs, fams, now) {
		if !r.Op.compare(s.value, r.Threshold) {
			continue
		}
		seen[s.key] = true
		st := rs.active[s.key]
		if st == nil || st.State == Resolved {
			labels := maps.Clone(s.labels)
			maps.Copy(labels, a.opts.Labels)
			labels["alertname"] = r.Name
			labels["severity"] = r.Severity
			st = &alertState{Alert: Alert{Rule: r.Name, Labels: labels, State: Pending, ActiveAt: now}}
			rs.active[s.key] = st
		}
		st.Value = s.value
		st.Annotations = annotations(r, st.Labels, s.value)
		if st.State == Pending && now.Sub(st.ActiveAt) >= r.For {
			st.State, st.FiredAt = Firing, now
		}
		if st.State == Firing && (st.lastSent.IsZero() || now.Sub(st.lastSent) >= a.opts.Resend) {
			out := st.snapshot()
			out.Resend = !st.lastSent.IsZero()
			out.ValidUntil = now.Add(4 * max(a.opts.Interval, a.opts.Resend))
			batch = append(batch, out)
			st.lastSent = now
		}
	}
	for key, st := range rs.active {
		if seen[key] {
			continue
		}
		switch st.State {
		case Pending:
			delete(rs.active, key) // back to inactive, as in Prometheus
		case Firing:
			st.State, st.ResolvedAt, st.lastSent = Resolved, now, now
			batch = append(batch, st.snapshot())
		case Resolved:
			if now.Sub(st.ResolvedAt) >= resolvedRetention {
				delete(rs.active, key)
			}
		}
	}
	return batch
}

func (st *alertState) snapshot() Alert {
	out := st.Alert
	out.Labels = maps.Clone(st.Labels)
	out.Annotations = maps.Clone(st.Annotations)
	return out
}

func annotations(r Rule, labels map[string]string, v float64) map[string]string {
	out := map[string]string{}
	if r.Summary != "" {
		out["summary"] = expand(r.Summary, labels, v)
	}
	if r.Description != "" {
		out["description"] = expand(r.Description, labels, v)
	}
	return out
}

type seriesValue struct {
	key    string
	labels map[string]string
	value  float64
}

// series returns the rule's value per matching series: the sample, or its
// rate over the window when the rule has a Rate.
func (a *Evaluator) series(rs *ruleState, fams map[string]*dto.MetricFamily, now time.Time) []seriesValue {
	r := rs.rule
	name, field := r.Metric, ""
	mf := fams[name]
	if mf == nil {
		for _, suffix := range []string{"_count", "_sum"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if m := fams[base]; m != nil && (m.GetType() == dto.MetricType_HISTOGRAM || m.GetType() == dto.MetricType_SUMMARY ||
					m.GetType() == dto.MetricType_GAUGE_HISTOGRAM) {
					mf, field = m, suffix
				}
			}
		}
	}
	var out []seriesValue
	live := map[string]bool{}
	if mf != nil {
	metrics:
		for _, m := range mf.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			for k, want := range r.Labels {
				if labels[k] != want {
					continue metrics
				}
			}
			v, ok := value(mf.GetType(), m, field)
			if !ok {
				continue
			}
			key := seriesKey(labels)
			if r.Rate > 0 {
				live[key] = true
				v, ok = rs.rate(key, sample{now, v}, r.Rate)
				if !ok {
					continue
				}
			}
			out = append(out, seriesValue{key: key, labels: labels, value: v})
		}
	}
	for key := range rs.samples {
		if !live[key] {
			delete(rs.samples, key)
		}
	}
	return out
}

func value(t dto.MetricType, m *dto.Metric, field string) (float64, bool) {
	switch t {
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue(), m.Gauge != nil
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue(), m.Counter != nil
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue(), m.Untyped != nil
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		if m.Histogram == nil {
			return 0, false
		}
		if field == "_sum" {
			return m.GetHistogram().GetSampleSum(), true
		}
		return float64(m.GetHistogram().GetSampleCount()), field == "_count"
	case dto.MetricType_SUMMARY:
		if m.Summary == nil {
			return 0, false
		}
		if field == "_sum" {
			return m.GetSummary().GetSampleSum(), true
		}
		return float64(m.GetSummary().GetSampleCount()), field == "_count"
	}
	return 0, false
}

// rate records s and returns the per-second increase of the counter over
// the samples within window (a reset, a value going down, counts from zero,
// as in PromQL). It needs two samples.
func (rs *ruleState) rate(key string, s sample, window time.Duration) (float64, bool) {
	h := append(rs.samples[key], s)
	cut := 0
	for cut < len(h) && s.t.Sub(h[cut].t) > window {
		cut++
	}
	h = append(h[:0:0], h[cut:]...)
	rs.samples[key] = h
	if len(h) < 2 {
		return 0, false
	}
	inc := 0.0
	for i := 1; i < len(h); i++ {
		d := h[i].v - h[i-1].v
		if d < 0 {
			d = h[i].v // counter reset
		}
		inc += d
	}
	secs := h[len(h)-1].t.Sub(h[0].t).Seconds()
	if secs <= 0 {
		return 0, false
	}
	return inc / secs, true
}

func seriesKey(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	return b.String()
}

// Active returns the pending, firing and recently resolved alerts, firing
// first, then by rule and labels.
func (a *Evaluator) Active() []Alert {
	a.mu.Lock()
	var out []Alert
	for _, rs := range a.rules {
		for _, st := range rs.active {
			out = append(out, st.snapshot())
		}
	}
	a.mu.Unlock()
	rank := map[State]int{Firing: 0, Pending: 1, Resolved: 2}
	sort.Slice(out, func(i, j int) bool {
		if rank[out[i].State] != rank[out[j].State] {
			return rank[out[i].State] < rank[out[j].State]
		}
		if out[i].Rule != out[j].Rule {
			return out[i].Rule < out[j].Rule
		}
		return seriesKey(out[i].Labels) < seriesKey(out[j].Labels)
	})
	return out
}

// dispatcher hands batches to one notifier from its own goroutine.
type dispatcher struct {
	n                     Notifier
	q                     chan []Alert
	log                   *zap.Logger
	sent, failed, dropped prometheus.Counter
}

// enqueue never blocks: when the queue is full the oldest batch is dropped.
func (d *dispatcher) enqueue(batch []Alert) {
	for {
		select {
		case d.q <- batch:
			return
		default:
		}
		select {
		case <-d.q:
			d.dropped.Inc()
			d.log.Warn("alert notifier is behind; dropped the oldest batch", zap.String("notifier", d.n.Name()))
		default:
		}
	}
}

func (d *dispatcher) run(ctx context.Context) {
	for batch := range d.q {
		if ctx.Err() != nil {
			d.failed.Inc()
			continue
		}
		if err := d.safeNotify(ctx, batch); err != nil {
			d.failed.Inc()
			d.log.Error("alert notification failed", zap.String("notifier", d.n.Name()),
				zap.Int("alerts", len(batch)), zap.Error(err))
			continue
		}
		d.sent.Inc()
	}
}

func (d *dispatcher) safeNotify(ctx context.Context, batch []Alert) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("notifier panicked: %v", r)
		}
	}()
	return d.n.Notify(ctx, batch)
}
