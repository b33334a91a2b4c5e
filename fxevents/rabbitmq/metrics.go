package rabbitmq

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus metrics (marty_rabbitmq_*).
type metrics struct {
	publishLatency prometheus.Histogram
	published      prometheus.Counter
	resent         prometheus.Counter
	reconnects     prometheus.Counter
	connected      prometheus.GaugeFunc
	ready          *prometheus.GaugeVec   // consumer: messages ready in its queues
	active         *prometheus.GaugeVec   // consumer: partitions this replica is active on
	retried        *prometheus.CounterVec // consumer
	deadLetters    *prometheus.CounterVec // consumer
	handoffs       *prometheus.CounterVec // consumer
}

func newMetrics(reg prometheus.Registerer, connected func() float64) (*metrics, error) {
	c := []string{"consumer"}
	m := &metrics{
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "marty_rabbitmq_publish_duration_seconds",
			Help:    "Time from publishing a batch of events to RabbitMQ to the last publisher confirm.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_rabbitmq_published_total", Help: "Events RabbitMQ confirmed (publisher confirms).",
		}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_rabbitmq_publish_resent_total", Help: "Events sent again because their confirm did not come (nack, lost connection).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_rabbitmq_reconnects_total", Help: "Recoveries of the connection to RabbitMQ.",
		}),
		connected: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "marty_rabbitmq_connected", Help: "1 while connected to RabbitMQ.",
		}, connected),
		ready: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marty_rabbitmq_consumer_ready", Help: "Messages ready (not delivered yet) in a consumer's partition queues.",
		}, c),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marty_rabbitmq_consumer_active_partitions", Help: "Partition queues of a consumer this replica received messages from recently.",
		}, c),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_rabbitmq_retried_total", Help: "Messages sent to a delay queue for a later attempt.",
		}, c),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_rabbitmq_dead_letters_total", Help: "Messages moved to the dead-letter queue.",
		}, c),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_rabbitmq_partition_handoffs_total", Help: "Partitions this replica handed to a standby replica (rebalancing).",
		}, c),
	}
	for _, col := range []prometheus.Collector{m.publishLatency, m.published, m.resent, m.reconnects, m.connected,
		m.ready, m.active, m.retried, m.deadLetters, m.handoffs} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
