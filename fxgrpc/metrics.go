package fxgrpc

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// serverMetrics is go-grpc-middleware's Prometheus server metrics
// (providers/prometheus with WithServerHandlingTimeHistogram): the same
// families, help, labels, buckets and counting rules (a unary call counts
// one message received, and one sent when it succeeds; a stream counts each
// message that went through), so dashboards and alerts written for it work
// unchanged. It differs in cost only: each method's series are resolved
// once and kept, so a call adds to counters it already holds instead of
// hashing its labels five times and allocating a reporter.
type serverMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	seconds                          *prometheus.HistogramVec
	methods                          sync.Map // full method -> *methodMetrics
}

// methodMetrics holds one method's series.
type methodMetrics struct {
	started, received, sent prometheus.Counter
	seconds                 prometheus.Observer
	handled                 [17]prometheus.Counter // by code (OK … Unauthenticated)
	vec                     *prometheus.CounterVec
	labels                  [3]string // grpc_type, grpc_service, grpc_method
}

func newServerMetrics() *serverMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	return &serverMetrics{
		started: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_started_total",
			Help: "Total number of RPCs started on the server."}, labels),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_handled_total",
			Help: "Total number of RPCs completed on the server, regardless of success or failure."},
			append(labels[:3:3], "grpc_code")),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_msg_received_total",
			Help: "Total number of RPC stream messages received on the server."}, labels),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_server_msg_sent_total",
			Help: "Total number of gRPC stream messages sent by the server."}, labels),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets}, labels),
	}
}

// Describe implements prometheus.Collector.
func (m *serverMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *serverMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *serverMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.started, m.handled, m.received, m.sent, m.seconds}
}

// grpcType is the grpc_type label of a method.
func grpcType(clientStream, serverStream bool) string {
	switch {
	case clientStream && serverStream:
		return "bidi_stream"
	case clientStream:
		return "client_stream"
	case serverStream:
		return "server_stream"
	}
	return "unary"
}

// method returns fullMethod's series, creating them on first use.
func (m *serverMetrics) method(fullMethod, typ string) *methodMetrics {
	if mm, ok := m.methods.Load(fullMethod); ok {
		return mm.(*methodMetrics)
	}
	service, name := "unknown", "unknown"
	if s, n, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/"); ok {
		service, name = s, n
	}
	mm := &methodMetrics{
		started:  m.started.WithLabelValues(typ, service, name),
		received: m.received.WithLabelValues(typ, service, name),
		sent:     m.sent.WithLabelValues(typ, service, name),
		seconds:  m.seconds.WithLabelValues(typ, service, name),
		vec:      m.handled,
		labels:   [3]string{typ, service, name},
	}
	for c := range mm.handled {
		mm.handled[c] = m.handled.WithLabelValues(typ, service, name, codes.Code(c).String())
	}
	v, _ := m.methods.LoadOrStore(fullMethod, mm)
	return v.(*methodMetrics)
}

// handledCounter returns the grpc_server_handled_total series of code.
func (mm *methodMetrics) handledCounter(code codes.Code) prometheus.Counter {
	if int(code) >= len(mm.handled) {
		return mm.vec.WithLabelValues(mm.labels[0], mm.labels[1], mm.labels[2], code.String())
	}
	return mm.handled[code]
}

// InitializeMetrics creates every registered method's series at zero, with
// every code, as go-grpc-middleware's InitializeMetrics does.
func (m *serverMetrics) InitializeMetrics(srv *grpc.Server) {
	for service, info := range srv.GetServiceInfo() {
		for _, mi := range info.Methods {
			m.method("/"+service+"/"+mi.Name, grpcType(mi.IsClientStream, mi.IsServerStream))
		}
	}
}

func (m *serverMetrics) done(mm *methodMetrics, start time.Time, err error) {
	mm.handledCounter(status.Code(err)).Inc()
	mm.seconds.Observe(time.Since(start).Seconds())
}

func (m *serverMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	mm := m.method(info.FullMethod, grpcType(info.IsClientStream, info.IsServerStream))
	mm.started.Inc()
	err := handler(srv, &countedStream{ServerStream: ss, mm: mm})
	m.done(mm, start, err)
	return err
}

// countedStream counts the messages a stream sent and received.
type countedStream struct {
	grpc.ServerStream
	mm *methodMetrics
}

func (s *countedStream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	if err == nil {
		s.mm.sent.Inc()
	}
	return err
}

func (s *countedStream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	if err == nil {
		s.mm.received.Inc()
	}
	return err
}
