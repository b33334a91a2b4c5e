package kafka

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the transport's Prometheus metrics (marty_kafka_*).
type metrics struct {
	publishLatency prometheus.Histogram
	published      *prometheus.CounterVec // topic
	publishFailed  prometheus.Counter
	producerResets prometheus.Counter
	consumed       *prometheus.CounterVec // group
	retried        *prometheus.CounterVec // group
	lag            *prometheus.GaugeVec   // group, topic, partition
	rebalances     *prometheus.CounterVec // group
	commitFailed   *prometheus.CounterVec // group
	deadLetters    *prometheus.CounterVec // group
	up             prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	g := []string{"group"}
	m := &metrics{
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "marty_kafka_publish_duration_seconds",
			Help:    "Time from producing a batch of events to the brokers' acknowledgement of all of them.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_kafka_published_total", Help: "Events the brokers acknowledged, by topic.",
		}, []string{"topic"}),
		publishFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_kafka_publish_failed_total", Help: "Events whose produce failed (the outbox sends them again).",
		}),
		producerResets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "marty_kafka_producer_resets_total", Help: "Producers replaced by a fresh one after records timed out.",
		}),
		consumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_kafka_consumed_total", Help: "Records a consumer group settled (handled or dead-lettered).",
		}, g),
		retried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_kafka_retries_total", Help: "Failed handler attempts retried in place (the record holds its partition).",
		}, g),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "marty_kafka_consumer_lag", Help: "Records of a partition after the last one the group settled (high watermark - next offset).",
		}, []string{"group", "topic", "partition"}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_kafka_rebalances_total", Help: "Partition assignments and revocations of a consumer group member.",
		}, g),
		commitFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_kafka_commit_failed_total", Help: "Offset commits that failed (the records are delivered again: at-least-once).",
		}, g),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "marty_kafka_dead_letters_total", Help: "Records copied to the dead-letter topic.",
		}, g),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "marty_kafka_up", Help: "1 while the last health ping of the cluster succeeded.",
		}),
	}
	for _, col := range []prometheus.Collector{m.publishLatency, m.published, m.publishFailed, m.producerResets, m.consumed, m.retried,
		m.lag, m.rebalances, m.commitFailed, m.deadLetters, m.up} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	return m, nil
}
