package fxauth

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The outcomes counted by marty_auth_requests_total.
const (
	outcomeOK              = "ok"              // authenticated and allowed
	outcomePublic          = "public"          // a public method or route
	outcomeUnauthenticated = "unauthenticated" // no token, or a token refused
	outcomeDenied          = "denied"          // no rule, or a rule the caller does not satisfy
	outcomeLimited         = "rate_limited"    // over the caller's rate
	outcomeUnavailable     = "unavailable"     // the issuer's keys could not be fetched
)

// metrics are fxauth's Prometheus series (marty_auth_*).
type metrics struct {
	requests *prometheus.CounterVec // transport, outcome
	// counters are requests' series, made once: a call looks its own up
	// without hashing labels.
	counters map[[2]string]prometheus.Counter
	jwks     *prometheus.CounterVec // result
	keys     prometheus.GaugeFunc
	// fallbacks counts limiter decisions made in process because Redis
	// did not answer; redisDown is 1 while it does not.
	fallbacks prometheus.Counter
	redisDown prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, trackedKeys func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_auth_requests_total",
			Help: "Calls and requests checked by fxauth, by transport (grpc, http) and outcome (ok, public, unauthenticated, denied, rate_limited, unavailable).",
		}, []string{"transport", "outcome"}),
		jwks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_auth_jwks_fetches_total",
			Help: "Fetches of the issuer's signing keys (JWKS), by result (ok, error).",
		}, []string{"result"}),
		keys: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "marty_auth_ratelimit_callers",
			Help: "Callers the in-process rate limiter tracks.",
		}, trackedKeys),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_auth_ratelimit_fallbacks_total",
			Help: "Rate-limit decisions taken in process because the limiter's Redis did not answer.",
		}),
		redisDown: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "marty_auth_ratelimit_redis_down",
			Help: "1 while the rate limiter's Redis does not answer (each replica limits on its own).",
		}),
	}
	m.counters = map[[2]string]prometheus.Counter{}
	for _, t := range []string{"grpc", "http"} {
		for _, o := range []string{outcomeOK, outcomePublic, outcomeUnauthenticated, outcomeDenied, outcomeLimited, outcomeUnavailable} {
			m.counters[[2]string{t, o}] = m.requests.WithLabelValues(t, o)
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.requests, m.jwks, m.keys, m.fallbacks, m.redisDown} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("fxauth: metrics already registered (two Auth on one Registerer?): %w", err)
			}
			return nil, fmt.Errorf("fxauth: register metrics: %w", err)
		}
	}
	return m, nil
}

// count adds one call of transport with outcome.
func (m *metrics) count(transport, outcome string) {
	if c, ok := m.counters[[2]string{transport, outcome}]; ok {
		c.Inc()
		return
	}
	m.requests.WithLabelValues(transport, outcome).Inc()
}
