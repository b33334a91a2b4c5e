// Command floor is what the lean HTTP composition cannot go below: the
// libraries the design requires (Fx, zap, net/http with TLS, Prometheus'
// client with its handler, the OpenTelemetry SDK with otelhttp, the OTLP/HTTP
// exporter) wired by hand, with no martyfx package.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

func main() {
	fx.New(
		fx.Provide(zap.NewProduction),
		fx.Invoke(func(lc fx.Lifecycle, log *zap.Logger) error {
			var opts []sdktrace.TracerProviderOption
			if os.Getenv("OTEL_TRACES_EXPORTER") == "otlp" {
				exp, err := otlptracehttp.New(context.Background())
				if err != nil {
					return err
				}
				opts = append(opts, sdktrace.WithBatcher(exp))
			}
			tp := sdktrace.NewTracerProvider(opts...)
			prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			mux := http.NewServeMux()
			mux.HandleFunc("GET /hello", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello\n")) })
			mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			srv := &http.Server{Handler: otelhttp.NewHandler(mux, "http", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(prop))}
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error {
					l, err := net.Listen("tcp", "127.0.0.1:0")
					if err != nil {
						return err
					}
					go func() { _ = srv.Serve(l) }()
					log.Info("listening", zap.String("addr", l.Addr().String()))
					fmt.Fprintln(os.Stderr, "footprint: ready")
					return nil
				},
				OnStop: func(ctx context.Context) error {
					_ = tp.Shutdown(ctx)
					return srv.Shutdown(ctx)
				},
			})
			return nil
		}),
	).Run()
}
