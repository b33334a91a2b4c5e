package breaker

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxmonitor/internal/confkey"
)

// ErrOpen is matched (errors.Is) by the error Breaker.Execute returns
// without calling its function: the breaker is open, or half-open with its
// trial calls taken.
var ErrOpen = errors.New("fxmonitor: circuit breaker open")

// State is the state of a breaker; its numeric value is the value of
// marty_circuit_breaker_state (0 closed, 1 half-open, 2 open).
type State uint8

// The breaker states.
const (
	Closed State = iota
	HalfOpen
	Open
)

// String returns "closed", "half-open" or "open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half-open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

func stateOf(s gobreaker.State) State {
	switch s {
	case gobreaker.StateHalfOpen:
		return HalfOpen
	case gobreaker.StateOpen:
		return Open
	}
	return Closed
}

// Counts are the calls a breaker counted since it last changed state or,
// while closed, since its Interval last cleared them.
type Counts struct {
	Requests             uint32
	TotalSuccesses       uint32
	TotalFailures        uint32
	ConsecutiveSuccesses uint32
	ConsecutiveFailures  uint32
}

// Options configures New. The zero value is ready to use.
type Options struct {
	// Registerer receives marty_circuit_breaker_state and
	// marty_circuit_breaker_requests_total; nil: metrics are not registered.
	Registerer prometheus.Registerer
	// Logger logs state transitions; nil: zap.NewNop().
	Logger *zap.Logger
}

// Breakers holds the app's named circuit breakers (on sony/gobreaker v2,
// which stays an implementation detail: no gobreaker type is part of this
// API). A breaker is created on first Get with the settings configured for
// its name. State is exported as marty_circuit_breaker_state{name} and
// calls as marty_circuit_breaker_requests_total{name,result}; transitions
// are logged.
type Breakers struct {
	cfg Config
	log *zap.Logger

	mu     sync.RWMutex
	byName map[string]*Breaker

	requests *prometheus.CounterVec
	stateDsc *prometheus.Desc
}

// Breaker is one named circuit breaker. It satisfies fxhttp's and fxgrpc's
// Breaker interface (Execute(func() error) error).
type Breaker struct {
	name     string
	settings Settings
	cb       *gobreaker.CircuitBreaker[struct{}]

	success, failure, rejected prometheus.Counter
}

// New validates cfg and returns the breaker set. With Fx, fxmonitor.Module
// provides it as *Breakers.
func New(cfg Config, opts Options) (*Breakers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxmonitor: circuit breaker config: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	b := &Breakers{
		cfg:    cfg,
		log:    opts.Logger,
		byName: map[string]*Breaker{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_circuit_breaker_requests_total",
			Help: "Calls through circuit breakers by result: success, failure, or rejected while open.",
		}, []string{"name", "result"}),
		stateDsc: prometheus.NewDesc("marty_circuit_breaker_state",
			"Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"name"}, nil),
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(b); err != nil {
			return nil, fmt.Errorf("fxmonitor: register the metrics marty_circuit_breaker_state and marty_circuit_breaker_requests_total: %w", err)
		}
	}
	return b, nil
}

// Get returns the breaker called name, creating it on first use.
func (b *Breakers) Get(name string) *Breaker {
	b.mu.RLock()
	br := b.byName[name]
	b.mu.RUnlock()
	if br != nil {
		return br
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if br = b.byName[name]; br != nil {
		return br
	}
	br = b.newBreaker(name, b.settingsFor(name))
	b.byName[name] = br
	return br
}

func (b *Breakers) newBreaker(name string, s Settings) *Breaker {
	br := &Breaker{
		name:     name,
		settings: s,
		success:  b.requests.WithLabelValues(name, "success"),
		failure:  b.requests.WithLabelValues(name, "failure"),
		rejected: b.requests.WithLabelValues(name, "rejected"),
	}
	interval := s.Interval
	if interval < 0 {
		interval = 0 // gobreaker: never clear
	}
	br.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: s.MaxRequests,
		Interval:    interval,
		Timeout:     s.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= s.ConsecutiveFailures {
				return true
			}
			return s.FailureRatio > 0 && c.Requests >= s.MinRequests &&
				float64(c.TotalFailures)/float64(c.Requests) >= s.FailureRatio
		},
		OnStateChange: func(name string, from, to gobreaker.State) {
			// Called under the breaker's lock: log only.
			fields := []zap.Field{zap.String("breaker", name), zap.String("from", stateOf(from).String()),
				zap.String("to", stateOf(to).String())}
			if to == gobreaker.StateOpen {
				b.log.Warn("circuit breaker opened", append(fields, zap.Duration("retry_after", s.Timeout))...)
			} else {
				b.log.Info("circuit breaker state changed", fields...)
			}
		},
	})
	return br
}

// settingsFor merges the defaults, the configured defaults and the settings
// configured for name.
func (b *Breakers) settingsFor(name string) Settings {
	s := merge(DefaultSettings(), b.cfg.Defaults)
	key := confkey.Key(name)
	for k, v := range b.cfg.Named {
		if confkey.Key(k) == key {
			s = merge(s, v)
		}
	}
	return s
}

// All returns the breakers created so far, sorted by name.
func (b *Breakers) All() []*Breaker {
	b.mu.RLock()
	out := make([]*Breaker, 0, len(b.byName))
	for _, br := range b.byName {
		out = append(out, br)
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Open returns the names of the open breakers, sorted (for a readiness
// check).
func (b *Breakers) Open() []string {
	var open []string
	for _, br := range b.All() {
		if br.State() == Open {
			open = append(open, br.name)
		}
	}
	return open
}

// Describe implements prometheus.Collector.
func (b *Breakers) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.stateDsc
	b.requests.Describe(ch)
}

// Collect implements prometheus.Collector. Reading the state also moves an
// open breaker whose timeout passed to half-open.
func (b *Breakers) Collect(ch chan<- prometheus.Metric) {
	for _, br := range b.All() {
		ch <- prometheus.MustNewConstMetric(b.stateDsc, prometheus.GaugeValue, float64(br.State()), br.name)
	}
	b.requests.Collect(ch)
}

// Name returns the breaker's name.
func (br *Breaker) Name() string { return br.name }

// Settings returns the breaker's effective settings.
func (br *Breaker) Settings() Settings { return br.settings }

// State returns the breaker's state.
func (br *Breaker) State() State { return stateOf(br.cb.State()) }

// Counts returns the calls counted in the current generation.
func (br *Breaker) Counts() Counts {
	c := br.cb.Counts()
	return Counts{Requests: c.Requests, TotalSuccesses: c.TotalSuccesses, TotalFailures: c.TotalFailures,
		ConsecutiveSuccesses: c.ConsecutiveSuccesses, ConsecutiveFailures: c.ConsecutiveFailures}
}

// Execute calls fn unless the breaker is open. While open (or half-open with
// its trial calls taken) it returns an error matching ErrOpen without
// calling fn. fn's own error is returned as it is. A panic in fn counts as a
// failure and is re-raised.
func (br *Breaker) Execute(fn func() error) error {
	_, err := br.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	return br.result(err)
}

func (br *Breaker) result(err error) error {
	switch {
	case err == nil:
		br.success.Inc()
		return nil
	case errors.Is(err, gobreaker.ErrOpenState):
		br.rejected.Inc()
		return &openError{name: br.name, why: "is open"}
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		br.rejected.Inc()
		return &openError{name: br.name, why: "is half-open and its trial calls are taken"}
	default:
		br.failure.Inc()
		return err
	}
}

// Call runs fn through br and returns its value: the typed form of Execute.
func Call[T any](br *Breaker, fn func() (T, error)) (T, error) {
	var out T
	err := br.Execute(func() error {
		v, err := fn()
		out = v
		return err
	})
	return out, err
}

type openError struct {
	name string
	why  string
}

func (e *openError) Error() string {
	return fmt.Sprintf("fxmonitor: circuit breaker %q %s", e.name, e.why)
}

func (e *openError) Is(target error) bool { return target == ErrOpen }
