package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

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

func grpcBareServer(b *testing.B) string {
	srv := grpc.NewServer()
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
// sampling. The machine is shared, so the variants are interleaved: b.N
// calls per variant are made in 10 rounds, each round running every variant
// in turn, and the totals are compared. Reported per variant: calls/s, p50
// and p99 latency, process CPU per call, and calls/s relative to bare.
func BenchmarkGRPCUnary(b *testing.B) {
	type variant struct {
		name string
		addr string
		lat  []time.Duration
		wall time.Duration
		cpu  time.Duration
	}
	vs := []*variant{{name: "bare", addr: grpcBareServer(b)}}
	for _, ratio := range []float64{1, 0.01} {
		tp := grpcBenchTracer(ratio)
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		tag := fmt.Sprintf("%g%%", ratio*100)
		vs = append(vs,
			&variant{name: "otelgrpc-" + tag, addr: grpcOtelServer(b, tp)},
			&variant{name: "naive-" + tag, addr: grpcNaiveServer(b, tp)},
			&variant{name: "martyfx-" + tag, addr: grpcMartyfxServer(b, tp, "info")},
			&variant{name: "mfx-nolog-" + tag, addr: grpcMartyfxServer(b, tp, "off")})
	}
	clients := make([]testgrpc.BenchmarkServiceClient, len(vs))
	for i, v := range vs {
		conn, err := grpc.NewClient(v.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		clients[i] = testgrpc.NewBenchmarkServiceClient(conn)
		grpcCalls(b, clients[i], 500) // warm up the connection and the pools
	}
	// Short rounds with the variants in a new random order each time: a
	// burst of load from elsewhere lands on one round, not on one variant.
	// Each variant's ratio to bare is the median over rounds of its rate
	// divided by bare's rate in the same round.
	const rounds = 40
	rng := rand.New(rand.NewPCG(1, 2))
	ratios := make([][]float64, len(vs))
	b.ResetTimer()
	for r := range rounds {
		n := b.N / rounds
		if r < b.N%rounds {
			n++
		}
		rate := make([]float64, len(vs))
		for _, i := range rng.Perm(len(vs)) {
			v := vs[i]
			cpu0, t0 := grpcCPUTime(), time.Now()
			v.lat = append(v.lat, grpcCalls(b, clients[i], n)...)
			wall := time.Since(t0)
			v.wall += wall
			v.cpu += grpcCPUTime() - cpu0
			rate[i] = float64(n) / wall.Seconds()
		}
		for i := range vs {
			ratios[i] = append(ratios[i], rate[i]/rate[0])
		}
	}
	b.StopTimer()

	for i, v := range vs {
		if len(v.lat) == 0 {
			return
		}
		slices.Sort(v.lat)
		slices.Sort(ratios[i])
		ratio := ratios[i][len(ratios[i])/2]
		rate := float64(len(v.lat)) / v.wall.Seconds()
		p50, p99 := v.lat[len(v.lat)/2], v.lat[len(v.lat)*99/100]
		cpu := float64(v.cpu) / float64(len(v.lat)) / 1e3
		b.ReportMetric(rate, v.name+"-calls/s")
		b.ReportMetric(ratio, v.name+"-x-bare")
		b.ReportMetric(float64(p50)/1e3, v.name+"-p50-µs")
		b.ReportMetric(float64(p99)/1e3, v.name+"-p99-µs")
		if b.N < 1000 {
			continue
		}
		b.Logf("%-15s %8.0f calls/s  median %.2fx bare  p50 %7.1fµs  p99 %8.1fµs  cpu %6.1fµs/call",
			v.name, rate, ratio, float64(p50)/1e3, float64(p99)/1e3, cpu)
	}
}

const grpcCallers = 16

// grpcCalls makes n calls from 16 concurrent callers and returns their latencies.
func grpcCalls(b *testing.B, client testgrpc.BenchmarkServiceClient, n int) []time.Duration {
	req := &testgrpc.SimpleRequest{ResponseSize: 32}
	ctx := context.Background()
	lat := make([][]time.Duration, grpcCallers)
	var wg sync.WaitGroup
	for w := range grpcCallers {
		k := n / grpcCallers
		if w < n%grpcCallers {
			k++
		}
		lat[w] = make([]time.Duration, 0, k)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range k {
				t := time.Now()
				if _, err := client.UnaryCall(ctx, req); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t))
			}
		}()
	}
	wg.Wait()
	return slices.Concat(lat...)
}

// grpcCPUTime is the user+system CPU time of the process so far.
func grpcCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
