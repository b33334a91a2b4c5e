package fxevents

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bus's Prometheus metrics (marty_events_*).
type metrics struct {
	published   *prometheus.CounterVec   // type
	handled     *prometheus.CounterVec   // type, handler
	failed      *prometheus.CounterVec   // type, handler
	retried     *prometheus.CounterVec   // type, handler
	dead        *prometheus.CounterVec   // type, handler
	duration    *prometheus.HistogramVec // type, handler
	undelivered *prometheus.CounterVec   // handler
	byType      sync.Map                 // type -> *typeInfo
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	th := []string{"type", "handler"}
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_events_published_total", Help: "Events accepted by Publish, by type.",
		}, []string{"type"}),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_events_handled_total", Help: "Events a handler handled successfully.",
		}, th),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_events_failed_total", Help: "Handler attempts that failed (errors, panics, timeouts).",
		}, th),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_events_retried_total", Help: "Failed attempts that will be retried after a backoff.",
		}, th),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_events_dead_total", Help: "Events dead-lettered after the last attempt or a permanent error.",
		}, th),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "marty_events_handler_duration_seconds", Help: "Duration of one handler attempt.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
		}, th),
		undelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_events_undelivered_total", Help: "Queued events the memory bus dropped at stop when the deadline passed.",
		}, []string{"handler"}),
	}
	for _, c := range []prometheus.Collector{m.published, m.handled, m.failed, m.retried, m.dead, m.duration, m.undelivered} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// typeInfo is what the publish path needs per event type, resolved once.
type typeInfo struct {
	published prometheus.Counter
	spanName  string
}

func (m *metrics) forType(typ string) *typeInfo {
	if c, ok := m.byType.Load(typ); ok {
		return c.(*typeInfo)
	}
	ti := &typeInfo{published: m.published.WithLabelValues(typ), spanName: "publish " + typ}
	m.byType.Store(typ, ti)
	return ti
}

func (m *metrics) publishedFor(typ string) prometheus.Counter { return m.forType(typ).published }

// handlerMetrics are one (handler, type)'s children, resolved once.
type handlerMetrics struct {
	handled, failed, retried, dead prometheus.Counter
	duration                       prometheus.Observer
	spanName                       string
}

func (m *metrics) forHandler(handler, typ string) *handlerMetrics {
	return &handlerMetrics{
		handled:  m.handled.WithLabelValues(typ, handler),
		failed:   m.failed.WithLabelValues(typ, handler),
		retried:  m.retried.WithLabelValues(typ, handler),
		dead:     m.dead.WithLabelValues(typ, handler),
		duration: m.duration.WithLabelValues(typ, handler),
		spanName: "process " + typ,
	}
}

// gaugeCollector exposes a value computed at scrape time per label value.
type gaugeCollector struct {
	desc *prometheus.Desc
	fn   func(emit func(v float64, labels ...string))
}

func (g gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	g.fn(func(v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, labels...)
	})
}
