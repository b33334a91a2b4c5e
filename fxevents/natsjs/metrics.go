package natsjs

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus metrics (marty_nats_*).
type metrics struct {
	publishLatency prometheus.Histogram
	published      prometheus.Counter
	duplicates     prometheus.Counter
	resent         prometheus.Counter
	reconnects     prometheus.Counter
	pending        *prometheus.GaugeVec // consumer
	ackPending     *prometheus.GaugeVec // consumer
	redelivered    *prometheus.GaugeVec // consumer
	deadLetters    *prometheus.CounterVec
	connected      prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, connected func() float64) (*metrics, error) {
	c := []string{"consumer"}
	m := &metrics{
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "marty_nats_publish_duration_seconds",
			Help:    "Time from publishing an event to JetStream to its PubAck.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_nats_published_total", Help: "Events JetStream acknowledged (PubAck).",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_nats_publish_duplicates_total", Help: "Published events JetStream already had (same Nats-Msg-Id in the duplicate window).",
		}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_nats_publish_resent_total", Help: "Events sent again because their PubAck did not come (timeout, lost connection).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_nats_reconnects_total", Help: "Reconnections to NATS.",
		}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marty_nats_consumer_pending", Help: "Messages of a durable consumer not delivered yet.",
		}, c),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marty_nats_consumer_ack_pending", Help: "Messages of a durable consumer delivered and not acknowledged yet.",
		}, c),
		redelivered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marty_nats_consumer_redelivered", Help: "Messages of a durable consumer delivered more than once and not acknowledged yet.",
		}, c),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_nats_dead_letters_total", Help: "Messages terminated and copied to the dead-letter subject.",
		}, c),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "marty_nats_connected", Help: "1 while connected to NATS.",
		}, connected),
	}
	for _, col := range []prometheus.Collector{m.publishLatency, m.published, m.duplicates, m.resent, m.reconnects,
		m.pending, m.ackPending, m.redelivered, m.deadLetters, m.connected} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
