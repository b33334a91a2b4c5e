package fxgrpc

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// CloseListener closes the server's listener from under it, as a dying
// network would.
func CloseListener(s *Server) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lis.Close()
}

// ServerTracingInterceptors returns the server's tracing interceptors (for
// unary calls, the server's fused interceptor with tracing alone).
func ServerTracingInterceptors(tp trace.TracerProvider, prop propagation.TextMapPropagator) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	t := newServerTracing(tp, prop)
	return (&serverCore{tracing: t}).unary, t.stream
}

// ServerMetricsInterceptors returns the server's Prometheus collector and
// interceptors, for comparing them with go-grpc-middleware's.
func ServerMetricsInterceptors() (prometheus.Collector, grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor, func(*grpc.Server)) {
	m := newServerMetrics()
	return m, (&serverCore{metrics: m}).unary, m.stream, m.InitializeMetrics
}

// ServiceStatus is the registry view of one hosted service.
type ServiceStatus = serviceStatus

// Hosted returns the server's registry view.
func Hosted(s *Server) []ServiceStatus { return s.hosted() }
