package fxtracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newExporter builds the exporter called name. No exporter connects here:
// OTLP/gRPC dials lazily and OTLP/HTTP connects per export, so an
// unreachable collector never delays start.
func newExporter(ctx context.Context, name string, s settings) (sdktrace.SpanExporter, error) {
	switch name {
	case "otlp":
		if s.otlp.protocol == protoGRPC {
			return otlptracegrpc.New(ctx, grpcOptions(s.otlp)...)
		}
		return otlptracehttp.New(ctx, httpOptions(s.otlp)...)
	case "console":
		return stdouttrace.New()
	}
	return nil, fmt.Errorf("fxtracing: exporter %q has no constructor", name)
}

func grpcOptions(o otlpSettings) []otlptracegrpc.Option {
	var opts []otlptracegrpc.Option
	if o.endpoint != "" {
		if o.endpointURL {
			opts = append(opts, otlptracegrpc.WithEndpointURL(o.endpoint))
		} else {
			opts = append(opts, otlptracegrpc.WithEndpoint(o.endpoint))
		}
	}
	if o.insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	if len(o.headers) > 0 {
		opts = append(opts, otlptracegrpc.WithHeaders(o.headers))
	}
	if o.timeout > 0 {
		opts = append(opts, otlptracegrpc.WithTimeout(o.timeout))
	}
	switch o.compression {
	case "gzip":
		opts = append(opts, otlptracegrpc.WithCompressor("gzip"))
	case "none":
		opts = append(opts, otlptracegrpc.WithCompressor(""))
	}
	return opts
}

func httpOptions(o otlpSettings) []otlptracehttp.Option {
	var opts []otlptracehttp.Option
	if o.endpoint != "" {
		if o.endpointURL {
			opts = append(opts, otlptracehttp.WithEndpointURL(o.endpoint))
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(o.endpoint))
		}
	}
	if o.insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	if len(o.headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(o.headers))
	}
	if o.timeout > 0 {
		opts = append(opts, otlptracehttp.WithTimeout(o.timeout))
	}
	switch o.compression {
	case "gzip":
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	case "none":
		opts = append(opts, otlptracehttp.WithCompression(otlptracehttp.NoCompression))
	}
	return opts
}

// describeEndpoint is the endpoint for the start log line, without user info.
func (o otlpSettings) describeEndpoint() string {
	if o.endpoint == "" {
		return "default"
	}
	if o.endpointURL {
		return redactURL(o.endpoint)
	}
	return o.endpoint
}
