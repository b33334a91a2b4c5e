package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxtest/load"
)

// The same handler behind every stack: a small JSON answer using a path value.
const httpBenchPattern = "GET /v1/orders/{id}"

func httpBenchHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"`+r.PathValue("id")+`","status":"shipped"}`)
	})
}

// httpSpanCounter ends the span pipeline: a real BatchSpanProcessor hands
// it batches, it counts them (the network export is not the HTTP stack's cost).
type httpSpanCounter struct{ spans atomic.Int64 }

func (e *httpSpanCounter) ExportSpans(_ context.Context, s []sdktrace.ReadOnlySpan) error {
	e.spans.Add(int64(len(s)))
	return nil
}
func (e *httpSpanCounter) Shutdown(context.Context) error { return nil }

// httpTelemetry is what each stack records into: a real SDK tracer provider with
// a batcher, a registry, and a JSON zap logger writing to io.Discard.
type httpTelemetry struct {
	tp  *sdktrace.TracerProvider
	exp *httpSpanCounter
	reg *prometheus.Registry
	log *zap.Logger
}

func newHTTPTelemetry(ratio float64) *httpTelemetry {
	exp := &httpSpanCounter{}
	sampler := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
	if ratio >= 1 {
		sampler = sdktrace.AlwaysSample()
	}
	enc := zap.NewProductionEncoderConfig()
	return &httpTelemetry{
		tp:  sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler), sdktrace.WithBatcher(exp)),
		exp: exp,
		reg: prometheus.NewRegistry(),
		log: zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(io.Discard), zap.InfoLevel)),
	}
}

func (t *httpTelemetry) close() { _ = t.tp.Shutdown(context.Background()) }

func httpBareStack() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(httpBenchPattern, httpBenchHandler())
	return mux
}

// httpNaiveStack is what a user composes by hand from the usual libraries:
// httpNaiveRecovery, a zap access log, otelhttp and promhttp instrumentation per route.
func httpNaiveStack(t *httpTelemetry) http.Handler {
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "x",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10},
	}, []string{"handler", "method", "code"})
	cnt := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "http_requests_total", Help: "x"}, []string{"handler", "method", "code"})
	inflight := prometheus.NewGauge(prometheus.GaugeOpts{Name: "http_requests_in_flight", Help: "x"})
	t.reg.MustRegister(dur, cnt, inflight)
	labels := prometheus.Labels{"handler": "/v1/orders/{id}"}
	route := promhttp.InstrumentHandlerInFlight(inflight,
		promhttp.InstrumentHandlerDuration(dur.MustCurryWith(labels),
			promhttp.InstrumentHandlerCounter(cnt.MustCurryWith(labels), httpBenchHandler())))
	mux := http.NewServeMux()
	mux.Handle(httpBenchPattern, route)
	traced := otelhttp.NewHandler(httpNaiveAccessLog(t.log, mux), "http", otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(propagation.TraceContext{}))
	return httpNaiveRecovery(t.log, traced)
}

func httpNaiveRecovery(log *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				log.Error("panic", zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type httpStatusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *httpStatusWriter) WriteHeader(c int) { s.status = c; s.ResponseWriter.WriteHeader(c) }
func (s *httpStatusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = 200
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// httpNaiveAccessLog sits inside otelhttp, so the request's context has the span.
func httpNaiveAccessLog(log *zap.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &httpStatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		sc := trace.SpanContextFromContext(r.Context())
		log.Info("http request",
			zap.String("method", r.Method), zap.String("path", r.URL.Path),
			zap.Int("status", sw.status), zap.Int("bytes", sw.bytes),
			zap.Duration("duration", time.Since(start)),
			zap.String("trace_id", sc.TraceID().String()))
	})
}

// httpOtelStack is otelhttp alone around the mux: tracing's own cost.
func httpOtelStack(t *httpTelemetry) http.Handler {
	return otelhttp.NewHandler(httpBareStack(), "http", otelhttp.WithTracerProvider(t.tp),
		otelhttp.WithPropagators(propagation.TraceContext{}))
}

func httpOursStack(b *testing.B, t *httpTelemetry, tweak ...func(*fxhttp.Config)) *fxhttp.Server {
	cfg := fxhttp.DefaultConfig()
	cfg.Addr, cfg.AdminAddr = "127.0.0.1:0", ""
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := fxhttp.NewServer(cfg, fxhttp.ServerOptions{
		Logger: t.log, Registerer: t.reg,
		TracerProvider: t.tp, Propagator: propagation.TraceContext{},
		Routes: []fxhttp.Route{{Pattern: httpBenchPattern, Handler: httpBenchHandler()}},
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// httpLoopback serves h on 127.0.0.1 and drives it with one load generator: one
// process, GOMAXPROCS client goroutines over keep-alive connections.
func httpLoopback(b *testing.B, serve func() (addr string, stop func())) {
	addr, stop := serve()
	defer stop()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := "http://" + addr + "/v1/orders/42"
	warm, err := client.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, warm.Body)
	warm.Body.Close()
	if warm.StatusCode != http.StatusOK {
		b.Fatalf("status %d", warm.StatusCode)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

func httpPlainServer(h http.Handler) func() (string, func()) {
	return func() (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		return ln.Addr().String(), func() { _ = srv.Close() }
	}
}

// BenchmarkHTTPLoopback is requests/s over httpLoopback for bare net/http, the
// naive composition and fxhttp's default stack, at 100% and 1% sampling.
func BenchmarkHTTPLoopback(b *testing.B) {
	b.Run("bare", func(b *testing.B) { httpLoopback(b, httpPlainServer(httpBareStack())) })
	for _, ratio := range []float64{1, 0.01} {
		name := fmt.Sprintf("sampled=%g%%", ratio*100)
		b.Run("naive/"+name, func(b *testing.B) {
			t := newHTTPTelemetry(ratio)
			defer t.close()
			httpLoopback(b, httpPlainServer(httpNaiveStack(t)))
		})
		b.Run("fxhttp/"+name, func(b *testing.B) {
			t := newHTTPTelemetry(ratio)
			defer t.close()
			s := httpOursStack(b, t)
			httpLoopback(b, func() (string, func()) {
				if err := s.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				return s.Addr(), func() { _ = s.Stop(context.Background()) }
			})
		})
	}
}

// BenchmarkHTTPLoopbackInterleaved runs the stacks side by side over
// loopback with load.Compare, in rounds: each round sends a batch of 1000
// requests from 4 workers to every stack, in a new random order, and the
// figures are the medians over rounds of each stack's req/s and of its
// ratio to bare in the same round. On a shared machine this cancels most of
// the load drift that sequential sub-benchmarks suffer. It also reports the
// process CPU time (client + server, all goroutines, GC included) per
// request: when the machine is busy with other work, wall-clock req/s
// mostly measures the scheduler, while bare-CPU / stack-CPU ("cpu-x-bare")
// is the throughput ratio the stacks reach when CPU-bound. The stacks: bare
// net/http, the naive composition, otelhttp alone, fxhttp's default stack
// and the same with its access log off, each but bare at 100% and 1%
// sampling. One iteration is one round: use -benchtime 30x.
func BenchmarkHTTPLoopbackInterleaved(b *testing.B) {
	var targets []load.Target
	add := func(name string, addr string, stop func()) {
		b.Cleanup(stop)
		tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
		b.Cleanup(tr.CloseIdleConnections)
		client := &http.Client{Transport: tr}
		url := "http://" + addr + "/v1/orders/42"
		targets = append(targets, load.HTTPRequest(name, client, func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		}))
	}
	addr, stop := httpPlainServer(httpBareStack())()
	add("bare", addr, stop)
	for _, ratio := range []float64{1, 0.01} {
		sfx := fmt.Sprintf("%g%%", ratio*100)
		tn := newHTTPTelemetry(ratio)
		b.Cleanup(tn.close)
		addr, stop := httpPlainServer(httpNaiveStack(tn))()
		add("naive-"+sfx, addr, stop)
		tt := newHTTPTelemetry(ratio)
		b.Cleanup(tt.close)
		addr, stop = httpPlainServer(httpOtelStack(tt))()
		add("otelhttp-"+sfx, addr, stop)
		to := newHTTPTelemetry(ratio)
		b.Cleanup(to.close)
		s := httpOursStack(b, to)
		if err := s.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		add("fxhttp-"+sfx, s.Addr(), func() { _ = s.Stop(context.Background()) })
		tq := newHTTPTelemetry(ratio)
		b.Cleanup(tq.close)
		q := httpOursStack(b, tq, func(c *fxhttp.Config) { c.AccessLog = fxhttp.AccessLogOff })
		if err := q.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		add("fxhttp-nolog-"+sfx, q.Addr(), func() { _ = q.Stop(context.Background()) })
	}
	b.ResetTimer()
	c, err := load.Compare(context.Background(), targets,
		load.Workers(4), load.Count(1000), load.Rounds(b.N), load.Seed(1),
		load.WarmupOps(1000)) // warm up connections and pools
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	for i, r := range c.Results {
		if r.Failed > 0 {
			b.Errorf("%s: %d requests failed\n%s", r.Name, r.Failed, c)
		}
		var rps, cpu []float64
		for _, rd := range c.Rounds[i] {
			rps = append(rps, rd.Throughput)
			cpu = append(cpu, float64(rd.CPUPerOp)/float64(time.Microsecond))
		}
		b.ReportMetric(httpMedian(rps), r.Name+"-req/s")
		b.ReportMetric(httpMedian(cpu), r.Name+"-cpu-µs/req")
		if i > 0 {
			b.ReportMetric(c.Ratios[i].Throughput, r.Name+"-x-bare")
			b.ReportMetric(c.Ratios[i].CPU, r.Name+"-cpu-x-bare")
		}
	}
	b.Logf("\n%s", c)
}

func httpMedian(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// httpDiscardWriter is a minimal ResponseWriter for the in-process benchmark.
type httpDiscardWriter struct{ h http.Header }

func (d *httpDiscardWriter) Header() http.Header         { return d.h }
func (d *httpDiscardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *httpDiscardWriter) WriteHeader(int)             {}

// BenchmarkHTTPHandler is the server-side cost per request of each stack,
// in process (no network): where the time and allocations go.
func BenchmarkHTTPHandler(b *testing.B) {
	run := func(b *testing.B, h http.Handler) {
		w := &httpDiscardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1:8080/v1/orders/42", nil)
			r.RemoteAddr = "127.0.0.1:50000"
			r.Header.Set("User-Agent", "Go-http-client/1.1")
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, httpBareStack()) })
	for _, ratio := range []float64{1, 0.01} {
		name := fmt.Sprintf("sampled=%g%%", ratio*100)
		b.Run("naive/"+name, func(b *testing.B) {
			t := newHTTPTelemetry(ratio)
			defer t.close()
			run(b, httpNaiveStack(t))
		})
		b.Run("fxhttp/"+name, func(b *testing.B) {
			t := newHTTPTelemetry(ratio)
			defer t.close()
			run(b, httpOursStack(b, t).Handler())
		})
	}
}
