package fxgrpc

import (
	"context"
	"sync"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/martyfx/martyfx/fxmonitor"
)

// Readiness drives the gRPC health service: *fxmonitor.Health satisfies it,
// and fxgrpc.Module uses it when fxmonitor.Module is in the app.
type Readiness interface {
	Healthy(kind fxmonitor.Kind) bool
	OnChange(fn func(kind fxmonitor.Kind, healthy bool))
}

// healthServer is grpc-go's health service (overall "" and one entry per
// hosted service) driven by readiness: NOT_SERVING until started, then
// SERVING while ready, NOT_SERVING for good from the first moment of
// shutdown. Watch streams end after they sent NOT_SERVING at shutdown, so
// they never hold the graceful stop.
type healthServer struct {
	*health.Server
	s *Server

	mu       sync.Mutex
	running  bool
	ready    bool
	down     bool
	watchers map[*watchStream]struct{}
}

func newHealthServer(s *Server) *healthServer {
	h := &healthServer{Server: health.NewServer(), s: s, ready: true, watchers: map[*watchStream]struct{}{}}
	h.setAll(healthpb.HealthCheckResponse_NOT_SERVING)
	if s.readiness != nil {
		s.readiness.OnChange(func(kind fxmonitor.Kind, healthy bool) {
			if kind&fxmonitor.Readiness == 0 {
				return
			}
			h.mu.Lock()
			h.ready = healthy
			h.mu.Unlock()
			h.update()
		})
	}
	return h
}

func (h *healthServer) setAll(st healthpb.HealthCheckResponse_ServingStatus) {
	h.SetServingStatus("", st)
	for _, svc := range h.s.services {
		h.SetServingStatus(svc.Desc.ServiceName, st)
	}
}

// started is called once the server listens: SERVING if ready.
func (h *healthServer) started() {
	ready := true
	if h.s.readiness != nil {
		ready = h.s.readiness.Healthy(fxmonitor.Readiness)
	}
	h.mu.Lock()
	h.running = true
	h.ready = ready
	h.mu.Unlock()
	h.update()
}

func (h *healthServer) update() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.running && h.ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.setAll(st)
}

// shutdown turns every entry NOT_SERVING for good (fxcore.Stopping.OnBegin).
func (h *healthServer) shutdown() {
	h.mu.Lock()
	h.down = true
	h.mu.Unlock()
	h.Shutdown()
}

func (h *healthServer) status(service string) healthpb.HealthCheckResponse_ServingStatus {
	res, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN
	}
	return res.GetStatus()
}

// Watch is grpc-go's Watch on a stream that ends once it has told the
// client NOT_SERVING during shutdown.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	w := &watchStream{Health_WatchServer: stream, ctx: ctx, cancel: cancel, h: h, last: -1}
	h.mu.Lock()
	h.watchers[w] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watchers, w)
		h.mu.Unlock()
	}()
	return h.Server.Watch(req, w)
}

// endWatches ends the watch streams that already told NOT_SERVING; the
// others end as soon as they have.
func (h *healthServer) endWatches() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		w.endIfDown()
	}
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx    context.Context
	cancel context.CancelFunc
	h      *healthServer

	mu   sync.Mutex
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(m *healthpb.HealthCheckResponse) error {
	err := w.Health_WatchServer.Send(m)
	w.mu.Lock()
	w.last = m.GetStatus()
	w.mu.Unlock()
	if w.h.s.stopping.Begun() {
		w.endIfDown()
	}
	return err
}

func (w *watchStream) endIfDown() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last != -1 && w.last != healthpb.HealthCheckResponse_SERVING {
		w.cancel()
	}
}
