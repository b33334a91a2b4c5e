package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	grpcrecovery "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxtest/load"
)

// grpcBenchService answers UnaryCall with a 32-byte payload: the same handler
// for every server variant.
type grpcBenchService struct {
	testgrpc.UnimplementedBenchmarkServiceServer
}

var grpcPayload = &testgrpc.SimpleResponse{Payload: &testgrpc.Payload{Body: make([]byte, 32)}}

func (grpcBenchService) UnaryCall(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	return grpcPayload, nil
}

// grpcBenchLogger is what every instrumented variant logs to: JSON at info,
// encoded in full, written to io.Discard (the cost measured is the
// logging code, not the terminal).
func grpcBenchLogger() *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(io.Discard), zapcore.InfoLevel))
}

// grpcBenchTracer samples ratio of the root spans, exported in batches to a
// discarding exporter.
func grpcBenchTracer(ratio float64) *sdktrace.TracerProvider {
	return sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()),
	)
}

// grpcZapInterceptorLogger is go-grpc-middleware's zap example adapter
// (interceptors/logging/examples/zap), verbatim in substance.
func grpcZapInterceptorLogger(l *zap.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		f := make([]zap.Field, 0, len(fields)/2)
		for i := 0; i < len(fields); i += 2 {
			key := fields[i]
			value := fields[i+1]
			switch v := value.(type) {
			case string:
				f = append(f, zap.String(key.(string), v))
			case int:
				f = append(f, zap.Int(key.(string), v))
			case bool:
				f = append(f, zap.Bool(key.(string), v))
			default:
				f = append(f, zap.Any(key.(string), v))
			}
		}
		logger := l.WithOptions(zap.AddCallerSkip(1)).With(f...)
		switch lvl {
		case logging.LevelDebug:
			logger.Debug(msg)
		case logging.LevelInfo:
			logger.Info(msg)
		case logging.LevelWarn:
			logger.Warn(msg)
		case logging.LevelError:
			logger.Error(msg)
		default:
			panic(fmt.Sprintf("unknown level %v", lvl))
		}
	})
}

// grpcServe starts srv on a loopback port and returns its address and a stop.
func grpcServe(b *testing.B, srv *grpc.Server) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	b.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func grpcBareServer(b *testing.B, opts ...grpc.ServerOption) string {
	srv := grpc.NewServer(opts...)
	testgrpc.RegisterBenchmarkServiceServer(srv, grpcBenchService{})
	return grpcServe(b, srv)
}

// grpcOtelServer has otelgrpc's stats handler only: tracing's own cost.
func grpcOtelServer(b *testing.B, tp *sdktrace.TracerProvider) string {
	srv := grpc.NewServer(grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))))
	testgrpc.RegisterBenchmarkServiceServer(srv, grpcBenchService{})
	return grpcServe(b, srv)
}

// grpcNaiveServer composes the same libraries the obvious way: otelgrpc's stats
// handler, go-grpc-middleware's recovery, prometheus and zap logging.
func grpcNaiveServer(b *testing.B, tp *sdktrace.TracerProvider) string {
	reg := prometheus.NewRegistry()
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	reg.MustRegister(metrics)
	srv := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp))),
		grpc.ChainUnaryInterceptor(
			grpcrecovery.UnaryServerInterceptor(),
			metrics.UnaryServerInterceptor(),
			logging.UnaryServerInterceptor(grpcZapInterceptorLogger(grpcBenchLogger())),
		),
	)
	testgrpc.RegisterBenchmarkServiceServer(srv, grpcBenchService{})
	metrics.InitializeMetrics(srv)
	return grpcServe(b, srv)
}

// grpcMartyfxServer is fxgrpc's server with its default chain and config.
func grpcMartyfxServer(b *testing.B, tp *sdktrace.TracerProvider, okLevel string) string {
	cfg := fxgrpc.DefaultConfig()
	cfg.LogOKLevel = okLevel
	cfg.Addr = "127.0.0.1:0"
	srv, err := fxgrpc.NewServer(cfg, fxgrpc.ServerOptions{
		Logger:         grpcBenchLogger(),
		Info:           fxcore.ServiceInfo{Environment: "production"},
		Registerer:     prometheus.NewRegistry(),
		TracerProvider: tp,
		Services:       []fxgrpc.Service{{Desc: &testgrpc.BenchmarkService_ServiceDesc, Impl: grpcBenchService{}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Stop(context.Background()) })
	return srv.Addr()
}

// BenchmarkGRPCUnary: unary calls over loopback TCP from 16 concurrent
// callers sharing one plain client connection, for the bare server, the
// naive composition and martyfx's default chain, each at 100% and 1% trace
// sampling, and bare with grpc-go's stream workers (which fxgrpc's server
// enables). The machine is shared, so the variants are interleaved by
// load.Compare: b.N calls per variant in 40 rounds, each round running every
// variant in a new random order, a burst of load from elsewhere landing on
// one round rather than on one variant. Reported per variant: calls/s, p50
// and p99 latency (HDR histogram), process CPU per call, and the median over
// rounds of its calls/s divided by bare's in the same round.
func BenchmarkGRPCUnary(b *testing.B) {
	type variant struct{ name, addr string }
	vs := []variant{{name: "bare", addr: grpcBareServer(b)},
		// grpc-go with the stream workers fxgrpc's server uses (16): what
		// that option alone is worth.
		{name: "bare-workers", addr: grpcBareServer(b, grpc.NumStreamWorkers(16))}}
	for _, ratio := range []float64{1, 0.01} {
		tp := grpcBenchTracer(ratio)
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		tag := fmt.Sprintf("%g%%", ratio*100)
		vs = append(vs,
			variant{name: "otelgrpc-" + tag, addr: grpcOtelServer(b, tp)},
			variant{name: "naive-" + tag, addr: grpcNaiveServer(b, tp)},
			variant{name: "martyfx-" + tag, addr: grpcMartyfxServer(b, tp, "info")},
			variant{name: "mfx-nolog-" + tag, addr: grpcMartyfxServer(b, tp, "off")})
	}
	targets := make([]load.Target, len(vs))
	req := &testgrpc.SimpleRequest{ResponseSize: 32}
	for i, v := range vs {
		conn, err := grpc.NewClient(v.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		client := testgrpc.NewBenchmarkServiceClient(conn)
		targets[i] = load.Func(v.name, func(ctx context.Context) error {
			_, err := client.UnaryCall(ctx, req)
			return err
		})
	}
	const rounds = 40
	b.ResetTimer()
	c, err := load.Compare(context.Background(), targets,
		load.Workers(grpcCallers), load.Count(max(1, b.N/rounds)), load.Rounds(rounds), load.Seed(1),
		load.WarmupOps(500)) // warm up the connections and the pools
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	for i, r := range c.Results {
		if r.Failed > 0 {
			b.Errorf("%s: %d calls failed\n%s", r.Name, r.Failed, c)
		}
		b.ReportMetric(r.Throughput, r.Name+"-calls/s")
		b.ReportMetric(c.Ratios[i].Throughput, r.Name+"-x-bare")
		b.ReportMetric(float64(r.P50)/1e3, r.Name+"-p50-µs")
		b.ReportMetric(float64(r.P99)/1e3, r.Name+"-p99-µs")
	}
	if b.N >= 1000 {
		b.Logf("\n%s", c)
	}
}

const grpcCallers = 16
