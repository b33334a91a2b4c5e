package fxmonitor

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"
)

// ErrBreakerOpen is returned (wrapped) by Breaker.Execute while the breaker is
// open, or half-open with its trial calls taken: the call was not made.
var ErrBreakerOpen = errors.New("fxmonitor: circuit breaker open")

// BreakerState is the state of a breaker; its numeric value is the value of
// marty_circuit_breaker_state (0 closed, 1 half-open, 2 open).
type BreakerState = gobreaker.State

// The breaker states.
const (
	BreakerClosed   = gobreaker.StateClosed
	BreakerHalfOpen = gobreaker.StateHalfOpen
	BreakerOpen     = gobreaker.StateOpen
)

// Breakers holds the app's named circuit breakers (sony/gobreaker v2). A
// breaker is created on first Get with the settings configured for its name.
// State is exported as marty_circuit_breaker_state{name} and calls as
// marty_circuit_breaker_requests_total{name,result}; transitions are logged.
type Breakers struct {
	cfg BreakersConfig
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
	settings BreakerSettings
	cb       *gobreaker.CircuitBreaker[struct{}]

	success, failure, rejected prometheus.Counter
}

// NewBreakers returns the breaker set. reg may be nil (no metrics), log may be
// nil (no logs). With Fx, Module provides it as *Breakers.
func NewBreakers(cfg BreakersConfig, reg prometheus.Registerer, log *zap.Logger) *Breakers {
	if log == nil {
		log = zap.NewNop()
	}
	b := &Breakers{
		cfg:    cfg,
		log:    log,
		byName: map[string]*Breaker{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_circuit_breaker_requests_total",
			Help: "Calls through circuit breakers by result: success, failure, or rejected while open.",
		}, []string{"name", "result"}),
		stateDsc: prometheus.NewDesc("marty_circuit_breaker_state",
			"Circuit breaker state: 0 closed, 1 half-open, 2 open.", []string{"name"}, nil),
	}
	if reg != nil {
		// Registration fails only when the app registers a second Breakers
		// on the same registry; the metrics of the first stay exported.
		if err := reg.Register(b); err != nil {
			log.Warn("fxmonitor: circuit breaker metrics not registered", zap.Error(err))
		}
	}
	return b
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
	s := b.settingsFor(name)
	br = &Breaker{
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
			fields := []zap.Field{zap.String("breaker", name), zap.String("from", from.String()), zap.String("to", to.String())}
			if to == gobreaker.StateOpen {
				b.log.Warn("circuit breaker opened", append(fields, zap.Duration("retry_after", s.Timeout))...)
			} else {
				b.log.Info("circuit breaker state changed", fields...)
			}
		},
	})
	b.byName[name] = br
	return br
}

// settingsFor merges the defaults, the configured defaults and the settings
// configured for name.
func (b *Breakers) settingsFor(name string) BreakerSettings {
	s := merge(DefaultBreakerSettings(), b.cfg.Defaults)
	key := configKey(name)
	for k, v := range b.cfg.Named {
		if configKey(k) == key {
			s = merge(s, v)
		}
	}
	return s
}

// configKey is how a breaker name matches a config key: env var names are
// upper case with "_" where the name may have "-" or ".".
func configKey(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == ' ' {
			return '_'
		}
		return r
	}, strings.ToLower(name))
}

func merge(base, over BreakerSettings) BreakerSettings {
	if over.MaxRequests != 0 {
		base.MaxRequests = over.MaxRequests
	}
	if over.Interval != 0 {
		base.Interval = over.Interval
	}
	if over.Timeout != 0 {
		base.Timeout = over.Timeout
	}
	if over.ConsecutiveFailures != 0 {
		base.ConsecutiveFailures = over.ConsecutiveFailures
	}
	if over.FailureRatio != 0 {
		base.FailureRatio = over.FailureRatio
	}
	if over.MinRequests != 0 {
		base.MinRequests = over.MinRequests
	}
	return base
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
func (br *Breaker) Settings() BreakerSettings { return br.settings }

// State returns the breaker's state.
func (br *Breaker) State() BreakerState { return br.cb.State() }

// Counts returns the calls counted in the current generation.
func (br *Breaker) Counts() gobreaker.Counts { return br.cb.Counts() }

// Execute calls fn unless the breaker is open. While open (or half-open with
// its trial calls taken) it returns an error matching ErrBreakerOpen and
// gobreaker's ErrOpenState or ErrTooManyRequests, without calling fn. fn's
// own error is returned as it is. A panic in fn counts as a failure and is
// re-raised.
func (br *Breaker) Execute(fn func() error) error {
	_, err := br.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	return br.result(err)
}

func (br *Breaker) result(err error) error {
	switch {
	case err == nil:
		br.success.Inc()
		return nil
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		br.rejected.Inc()
		return &openError{name: br.name, err: err}
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
	err  error
}

func (e *openError) Error() string {
	return fmt.Sprintf("fxmonitor: circuit breaker %q: %v", e.name, e.err)
}

func (e *openError) Is(target error) bool { return target == ErrBreakerOpen }

func (e *openError) Unwrap() error { return e.err }

// openBreakers lists the names of open breakers, for the readiness check.
func (b *Breakers) openBreakers() []string {
	var open []string
	for _, br := range b.All() {
		if br.State() == gobreaker.StateOpen {
			open = append(open, br.name)
		}
	}
	return open
}

// retryAfter is how long an open breaker stays open: for status pages.
func (br *Breaker) retryAfter() time.Duration { return br.settings.Timeout }
