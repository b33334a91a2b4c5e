package fxtracing_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxtracing"
)

// A span around a piece of work, recorded in memory the way a test does.
func ExampleRun() {
	src, _ := fxcore.NewSourceFrom("", []string{"MARTY_LOG_LEVEL=error"})
	rec := tracetest.NewSpanRecorder()
	app := fx.New(fxcore.Module, fxtracing.Module, fx.NopLogger, fx.Replace(src),
		fxtracing.AsSpanProcessor(rec))
	if err := app.Start(context.Background()); err != nil {
		panic(err)
	}
	defer func() {
		if err := app.Stop(context.Background()); err != nil {
			panic(err)
		}
	}()

	err := fxtracing.Run(context.Background(), "orders.reserve", func(ctx context.Context) error {
		ctx, _ = fxtracing.SetBaggage(ctx, "tenant", "acme")
		return fxtracing.Run(ctx, "stock.check", func(ctx context.Context) error {
			fmt.Println("tenant:", fxtracing.Baggage(ctx, "tenant"))
			return nil
		})
	})
	fmt.Println("err:", err)
	for _, s := range rec.Ended() {
		fmt.Println(s.Name(), s.Parent().IsValid())
	}
	// Output:
	// tenant: acme
	// err: <nil>
	// stock.check true
	// orders.reserve false
}

// A provider without Fx, for a program that builds its own dependencies.
func ExampleNewTracerProvider() {
	src, _ := fxcore.NewSourceFrom("", []string{"OTEL_TRACES_EXPORTER=none", "OTEL_TRACES_SAMPLER=always_on"})
	rec := tracetest.NewSpanRecorder()
	tp, err := fxtracing.NewTracerProvider(context.Background(), fxtracing.DefaultConfig(), fxtracing.TracerProviderOptions{
		Source:     src,
		Info:       fxcore.ServiceInfo{Name: "orders", Version: "1.0.0", Environment: "production"},
		Processors: []sdktrace.SpanProcessor{rec},
	})
	if err != nil {
		panic(err)
	}
	_, span := tp.Tracer("orders").Start(context.Background(), "orders.reserve")
	span.End()
	_ = tp.Shutdown(context.Background())

	s := rec.Ended()[0]
	name, _ := s.Resource().Set().Value("service.name")
	fmt.Println(s.Name(), name.AsString())
	// Output:
	// orders.reserve orders
}
