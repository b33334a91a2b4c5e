package fxtracing

import (
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a minimal OpenTelemetry collector: it accepts OTLP trace
// exports over HTTP or gRPC, decoded with the collector's protobuf types.
type otlpReceiver struct {
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	auth     []string
}

func (r *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest, auth string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
	r.auth = append(r.auth, auth)
}

func (r *otlpReceiver) spanNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names = append(names, s.GetName())
				}
			}
		}
	}
	slices.Sort(names)
	return names
}

// resourceAttr returns a string attribute of the first resource received.
func (r *otlpReceiver) resourceAttr(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, kv := range r.requests[0].GetResourceSpans()[0].GetResource().GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func (r *otlpReceiver) authHeaders() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Compact(append([]string(nil), r.auth...))
}

// startHTTPReceiver serves OTLP/HTTP (protobuf, optionally gzip) on
// 127.0.0.1 and returns its base URL.
func startHTTPReceiver(t *testing.T) (*otlpReceiver, string) {
	r := &otlpReceiver{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, req *http.Request) {
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		msg := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(raw, msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.add(msg, req.Header.Get("Authorization"))
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return r, srv.URL
}

type grpcTraceService struct {
	coltracepb.UnimplementedTraceServiceServer
	r *otlpReceiver
}

func (s grpcTraceService) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	auth := ""
	if v := md.Get("authorization"); len(v) > 0 {
		auth = v[0]
	}
	s.r.add(req, auth)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// startGRPCReceiver serves OTLP/gRPC on 127.0.0.1 and returns its URL.
func startGRPCReceiver(t *testing.T) (*otlpReceiver, string) {
	r := &otlpReceiver{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, grpcTraceService{r: r})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return r, "http://" + lis.Addr().String()
}

func receiverFor(t *testing.T, protocol string) (*otlpReceiver, string) {
	if protocol == protoGRPC {
		return startGRPCReceiver(t)
	}
	return startHTTPReceiver(t)
}

func noop(context.Context) error { return nil }

// TestShutdownFlushesToCollector: spans still queued at stop reach a real
// collector, over each OTLP protocol.
func TestShutdownFlushesToCollector(t *testing.T) {
	for _, protocol := range []string{protoGRPC, protoHTTP} {
		t.Run(protocol, func(t *testing.T) {
			rcv, endpoint := receiverFor(t, protocol)
			a := startApp(t, []string{
				"MARTY_ENV=production", // otlp is the default exporter here
				"MARTY_SERVICE_NAME=orders",
				"OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint,
				"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20t0ken",
				"OTEL_EXPORTER_OTLP_COMPRESSION=gzip",
				"OTEL_RESOURCE_ATTRIBUTES=team=payments",
				"MARTY_TRACING_SCHEDULE_DELAY=1h", // nothing leaves before stop
			})
			require.Equal(t, protocol, a.startLog(t)["protocol"])
			for _, name := range []string{"a", "b", "c"} {
				require.NoError(t, Run(context.Background(), name, noop))
			}
			require.Empty(t, rcv.spanNames(), "the batch waits for its schedule delay")

			a.stop(t)
			require.Equal(t, []string{"a", "b", "c"}, rcv.spanNames())
			require.Equal(t, []string{"Bearer t0ken"}, rcv.authHeaders())
			require.Equal(t, "orders", rcv.resourceAttr("service.name"))
			require.Equal(t, "payments", rcv.resourceAttr("team"))
			require.Equal(t, "production", rcv.resourceAttr("deployment.environment.name"))
			require.Empty(t, a.logs.FilterMessage("tracing: pending spans were not all flushed at shutdown").All())
		})
	}
}

// TestBatchSizeFromConfig: MARTY_TRACING_BATCH_SIZE sends a full batch
// without waiting for the schedule delay.
func TestBatchSizeFromConfig(t *testing.T) {
	rcv, endpoint := startHTTPReceiver(t)
	a := startApp(t, []string{
		"OTEL_TRACES_EXPORTER=otlp",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + endpoint + "/v1/traces",
		"MARTY_TRACING_BATCH_SIZE=2",
		"MARTY_TRACING_SCHEDULE_DELAY=1h",
	})
	for _, name := range []string{"one", "two", "three"} {
		require.NoError(t, Run(context.Background(), name, noop))
	}
	require.Eventually(t, func() bool { return len(rcv.spanNames()) == 2 }, 5*time.Second, 10*time.Millisecond,
		"a batch of 2 is sent while the app runs")
	require.Equal(t, []string{"one", "two"}, rcv.spanNames())
	a.stop(t)
	require.Equal(t, []string{"one", "three", "two"}, rcv.spanNames())
}

// blackhole accepts TCP connections and never answers: a collector that
// hangs.
func blackhole(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "http://" + lis.Addr().String()
}

// TestUnreachableCollector: a collector that never answers fails neither
// start, nor requests, nor the stop: the flush gives up before the stop
// deadline with a warning.
func TestUnreachableCollector(t *testing.T) {
	for _, protocol := range []string{protoGRPC, protoHTTP} {
		t.Run(protocol, func(t *testing.T) {
			a, err := newApp(t, []string{
				"MARTY_ENV=production",
				"OTEL_EXPORTER_OTLP_PROTOCOL=" + protocol,
				"OTEL_EXPORTER_OTLP_ENDPOINT=" + blackhole(t),
				"MARTY_TRACING_SCHEDULE_DELAY=10ms",
			})
			require.NoError(t, err)
			require.NoError(t, a.app.Start(context.Background()))
			for range 100 {
				require.NoError(t, Run(context.Background(), "request", noop))
			}

			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			require.NoError(t, a.app.Stop(ctx), "a failed flush is not a failed stop")
			warn := a.logs.FilterMessage("tracing: pending spans were not all flushed at shutdown").All()
			require.Len(t, warn, 1)
			require.Contains(t, warn[0].ContextMap()["error"], "deadline exceeded")
		})
	}
}

// TestHostPortEndpoint: a scheme-less endpoint with OTEL_EXPORTER_OTLP_INSECURE
// reaches a plain-text collector, over each protocol.
func TestHostPortEndpoint(t *testing.T) {
	for _, protocol := range []string{protoGRPC, protoHTTP} {
		t.Run(protocol, func(t *testing.T) {
			rcv, endpoint := receiverFor(t, protocol)
			a := startApp(t, []string{
				"OTEL_TRACES_EXPORTER=otlp",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=" + protocol,
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + strings.TrimPrefix(endpoint, "http://"),
				"OTEL_EXPORTER_OTLP_TRACES_INSECURE=true",
				"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=none",
				"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=5000",
			})
			require.NoError(t, Run(context.Background(), "plain", noop))
			a.stop(t)
			require.Equal(t, []string{"plain"}, rcv.spanNames())
		})
	}
}
