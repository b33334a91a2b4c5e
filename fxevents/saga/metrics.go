package saga

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	started      *prometheus.CounterVec
	completed    *prometheus.CounterVec
	failed       *prometheus.CounterVec
	compensated  *prometheus.CounterVec
	aborted      *prometheus.CounterVec
	ignored      *prometheus.CounterVec
	stuck        *prometheus.CounterVec
	stepFailures *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	open         *prometheus.GaugeVec
	stuckNow     prometheus.Gauge
	purged       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"saga"})
	}
	m := &metrics{
		started:     counter("marty_saga_started_total", "Sagas started."),
		completed:   counter("marty_saga_completed_total", "Sagas completed."),
		failed:      counter("marty_saga_failed_total", "Sagas that failed (a step called Fail): their compensations run."),
		compensated: counter("marty_saga_compensated_total", "Sagas whose compensations all ran."),
		aborted:     counter("marty_saga_aborted_total", "Sagas aborted by an operator."),
		ignored:     counter("marty_saga_ignored_total", "Events and timers ignored: no saga, or one no longer running."),
		stuck:       counter("marty_saga_stuck_total", "Timer and compensation steps that ran out of attempts (the saga waits for a retry)."),
		stepFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marty_saga_step_failures_total",
			Help: "Failed attempts of timer and compensation steps (event steps: marty_events_failed_total)."}, []string{"saga", "step"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "marty_saga_step_duration_seconds",
			Help:    "Duration of the saga steps that committed, from the row lock to the stored state.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"saga", "step"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "marty_saga_open",
			Help: "Open sagas by status (running, compensating, stuck)."}, []string{"saga", "status"}),
		stuckNow: prometheus.NewGauge(prometheus.GaugeOpts{Name: "marty_saga_stuck_sagas",
			Help: "Sagas stuck now: a timer or compensation ran out of attempts and waits for a retry."}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{Name: "marty_saga_purged_total",
			Help: "Ended sagas (and their history) deleted after MARTY_SAGA_RETENTION."}),
	}
	for _, c := range []prometheus.Collector{m.started, m.completed, m.failed, m.compensated, m.aborted, m.ignored,
		m.stuck, m.stepFailures, m.duration, m.open, m.stuckNow, m.purged} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// transition counts a saga's change of status.
func (m *metrics) transition(saga string, from, to Status) {
	if from == to {
		return
	}
	if from == StatusRunning && (to == StatusCompensating || to == StatusCompensated) {
		m.failed.WithLabelValues(saga).Inc()
	}
	switch to {
	case StatusCompleted:
		m.completed.WithLabelValues(saga).Inc()
	case StatusCompensated:
		m.compensated.WithLabelValues(saga).Inc()
	case StatusAborted:
		m.aborted.WithLabelValues(saga).Inc()
	}
}
