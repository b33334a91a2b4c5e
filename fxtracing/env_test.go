package fxtracing

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/martyfx/martyfx/fxcore"
)

// TestEnvSelectsTheSetup drives the module with each environment and reads
// what it set up from its start log line.
func TestEnvSelectsTheSetup(t *testing.T) {
	t.Parallel()
	defaults := map[string]any{"exporter": "none", "sampler": "parentbased_always_on", "propagators": []any{"tracecontext", "baggage"}}
	with := func(kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range defaults {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name string
		env  []string
		want map[string]any
	}{
		{"development defaults to none", nil, defaults},
		{"test environment defaults to none", []string{"MARTY_ENV=test"}, defaults},
		{"production defaults to otlp over http", []string{"MARTY_ENV=production"},
			with("exporter", "otlp", "protocol", "http/protobuf", "endpoint", "default")},
		{"none in production", []string{"MARTY_ENV=production", "OTEL_TRACES_EXPORTER=none"}, defaults},
		{"console in development", []string{"OTEL_TRACES_EXPORTER=console"}, with("exporter", "console")},
		{"otlp and console", []string{"OTEL_TRACES_EXPORTER=otlp, console,none"},
			with("exporter", "otlp,console", "protocol", "http/protobuf", "endpoint", "default")},
		{"otlp over grpc", []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317"},
			with("exporter", "otlp", "protocol", "grpc", "endpoint", "http://collector:4317")},
		{"traces protocol beats the generic one", []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf"},
			with("exporter", "otlp", "protocol", "http/protobuf", "endpoint", "default")},
		{"generic http endpoint gets the signal path", []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=https://collector:4318/base/"},
			with("exporter", "otlp", "protocol", "http/protobuf", "endpoint", "https://collector:4318/base/v1/traces")},
		{"traces endpoint is used as it is", []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=http://ignored:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:4318/custom"},
			with("exporter", "otlp", "protocol", "http/protobuf", "endpoint", "http://collector:4318/custom")},
		{"host:port endpoint", []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4317", "OTEL_EXPORTER_OTLP_INSECURE=true"},
			with("exporter", "otlp", "protocol", "grpc", "endpoint", "collector:4317")},
		{"user info never logged", []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://user:s3cret@collector:4318/v1/traces"},
			with("exporter", "otlp", "protocol", "http/protobuf", "endpoint", "https://collector:4318/v1/traces")},
		{"always_off", []string{"OTEL_TRACES_SAMPLER=always_off"}, with("sampler", "always_off")},
		{"always_on", []string{"OTEL_TRACES_SAMPLER=always_on"}, with("sampler", "always_on")},
		{"traceidratio with an argument", []string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=0.25"}, with("sampler", "traceidratio(0.25)")},
		{"parentbased_traceidratio defaults to 1", []string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio"}, with("sampler", "parentbased_traceidratio(1)")},
		{"propagators", []string{"OTEL_PROPAGATORS=b3, tracecontext"}, with("propagators", []any{"b3", "tracecontext"})},
		{"sdk disabled", []string{"MARTY_ENV=production", "OTEL_SDK_DISABLED=true"}, with("sampler", "disabled")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := startApp(t, tc.env)
			got := a.startLog(t)
			delete(got, "logger")
			require.Equal(t, tc.want, got)
		})
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		env  []string
		want string
	}{
		{[]string{"OTEL_TRACES_EXPORTER=zipkin"}, `fxtracing: invalid OTEL_TRACES_EXPORTER="zipkin": want a comma-separated list of otlp, console, none`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_PROTOCOL="http/json": want one of "grpc", "http/protobuf"`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=udp"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="udp"`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=ftp://collector"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_ENDPOINT="ftp://collector": want an http:// or https:// URL, or host:port`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_TIMEOUT=soon"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_TIMEOUT="soon": want a positive number of milliseconds`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION=zstd"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_TRACES_COMPRESSION="zstd": want one of "gzip", "none"`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_INSECURE=maybe"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_INSECURE="maybe": want true or false`},
		{[]string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_HEADERS=authorization"}, `fxtracing: invalid OTEL_EXPORTER_OTLP_HEADERS: entry 1 is not key=value`},
		{[]string{"OTEL_TRACES_SAMPLER=jaeger_remote"}, `fxtracing: invalid OTEL_TRACES_SAMPLER="jaeger_remote": want one of "always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"`},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=1.5"}, `fxtracing: invalid OTEL_TRACES_SAMPLER_ARG="1.5": want a sampling ratio between 0 and 1`},
		{[]string{"OTEL_PROPAGATORS=tracecontext,carrier-pigeon"}, `fxtracing: invalid OTEL_PROPAGATORS="tracecontext,carrier-pigeon"`},
		{[]string{"OTEL_SDK_DISABLED=sometimes"}, `fxtracing: invalid OTEL_SDK_DISABLED="sometimes": want true or false`},
		{[]string{"OTEL_RESOURCE_ATTRIBUTES=team"}, `fxtracing: invalid OTEL_RESOURCE_ATTRIBUTES: entry 1 ("team") is not key=value`},
		{[]string{"OTEL_BSP_MAX_QUEUE_SIZE=lots"}, `fxtracing: invalid OTEL_BSP_MAX_QUEUE_SIZE="lots": want a positive integer`},
		{[]string{"OTEL_BSP_SCHEDULE_DELAY=5s"}, `fxtracing: invalid OTEL_BSP_SCHEDULE_DELAY="5s": want a positive number of milliseconds`},
		{[]string{"MARTY_TRACING_QUEUE_SIZE=-1"}, `fxcore: invalid MARTY_TRACING_QUEUE_SIZE=-1: want a positive number of spans, or 0 for the default`},
		{[]string{"MARTY_TRACING_BATCH_SIZE=-5"}, `fxcore: invalid MARTY_TRACING_BATCH_SIZE=-5: want a positive number of spans, or 0 for the default`},
		{[]string{"MARTY_TRACING_EXPORT_TIMEOUT=-1s"}, `fxcore: invalid MARTY_TRACING_EXPORT_TIMEOUT="-1s": want a positive duration, or 0 for the default`},
		{[]string{"MARTY_TRACING_SCHEDULE_DELAY=-1s"}, `fxcore: invalid MARTY_TRACING_SCHEDULE_DELAY="-1s": want a positive duration, or 0 for the default`},
		{[]string{"MARTY_TRACING_SCHEDULE_DELAY=soon"}, `fxcore: invalid MARTY_TRACING_SCHEDULE_DELAY="soon"`},
		{[]string{"MARTY_TRACING_QUEUE_SIZE=100", "MARTY_TRACING_BATCH_SIZE=200"}, `fxcore: invalid MARTY_TRACING_BATCH_SIZE=200: want at most queue_size`},
		{[]string{"MARTY_TRACING_QUEUE_SIZE=100"}, `fxtracing: batch size 512 is larger than the queue size 100: lower MARTY_TRACING_BATCH_SIZE (or OTEL_BSP_MAX_EXPORT_BATCH_SIZE) or raise MARTY_TRACING_QUEUE_SIZE (or OTEL_BSP_MAX_QUEUE_SIZE)`},
	}
	for _, tc := range tests {
		t.Run(tc.env[len(tc.env)-1], func(t *testing.T) {
			_, err := newApp(t, tc.env)
			require.ErrorContains(t, err, tc.want)
		})
	}

	// Header values are credentials: they never reach an error.
	_, err := newApp(t, []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20s3cret,broken"})
	require.ErrorContains(t, err, "OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not key=value")
	require.NotContains(t, err.Error(), "s3cret")
	_, err = newApp(t, []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_ENDPOINT=ftp://user:s3cret@collector"})
	require.ErrorContains(t, err, "OTEL_EXPORTER_OTLP_ENDPOINT")
	require.NotContains(t, err.Error(), "s3cret")
}

func TestBatchSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		env  []string
		want batchSettings
	}{
		{"sdk defaults", Config{}, nil, batchSettings{2048, 512, 5 * time.Second, 30 * time.Second}},
		{"OTEL_BSP_*", Config{}, []string{"OTEL_BSP_MAX_QUEUE_SIZE=100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=10", "OTEL_BSP_SCHEDULE_DELAY=250", "OTEL_BSP_EXPORT_TIMEOUT=1000"},
			batchSettings{100, 10, 250 * time.Millisecond, time.Second}},
		{"Config beats OTEL_BSP_*", Config{QueueSize: 300, BatchSize: 30, ScheduleDelay: time.Second, ExportTimeout: 2 * time.Second},
			[]string{"OTEL_BSP_MAX_QUEUE_SIZE=100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE=10", "OTEL_BSP_SCHEDULE_DELAY=250", "OTEL_BSP_EXPORT_TIMEOUT=1000"},
			batchSettings{300, 30, time.Second, 2 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := fxcore.NewSourceFrom("", tc.env)
			require.NoError(t, err)
			got, err := resolveBatch(tc.cfg, src)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}

	var cfg Config
	src, err := fxcore.NewSourceFrom("", []string{"MARTY_TRACING_BATCH_SIZE=7", "MARTY_TRACING_SCHEDULE_DELAY=1m"})
	require.NoError(t, err)
	cfg, err = fxcore.Load(src, "tracing", DefaultConfig())
	require.NoError(t, err)
	require.Equal(t, Config{BatchSize: 7, ScheduleDelay: time.Minute}, cfg)
}

// TestSamplers checks which spans each OTEL_TRACES_SAMPLER records.
func TestSamplers(t *testing.T) {
	unsampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true,
	}))
	sampledParent := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{3}, SpanID: trace.SpanID{4}, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	tests := []struct {
		env                      []string
		root, unsampled, sampled bool // recorded?
	}{
		{nil, true, false, true},
		{[]string{"OTEL_TRACES_SAMPLER=always_on"}, true, true, true},
		{[]string{"OTEL_TRACES_SAMPLER=always_off"}, false, false, false},
		{[]string{"OTEL_TRACES_SAMPLER=parentbased_always_off"}, false, false, true},
		{[]string{"OTEL_TRACES_SAMPLER=traceidratio", "OTEL_TRACES_SAMPLER_ARG=0"}, false, false, false},
		{[]string{"OTEL_TRACES_SAMPLER=parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG=0"}, false, false, true},
		{[]string{"OTEL_SDK_DISABLED=true"}, false, false, false},
	}
	for _, tc := range tests {
		name := "default"
		if len(tc.env) > 0 {
			name = tc.env[len(tc.env)-1]
		}
		t.Run(name, func(t *testing.T) {
			a := startApp(t, tc.env)
			for _, c := range []struct {
				ctx  context.Context
				name string
				want bool
			}{{context.Background(), "root", tc.root}, {unsampledParent, "unsampled", tc.unsampled}, {sampledParent, "sampled", tc.sampled}} {
				called := false
				require.NoError(t, Run(c.ctx, c.name, func(ctx context.Context) error {
					called = true
					sc := trace.SpanContextFromContext(ctx)
					require.Equal(t, c.want, sc.IsSampled(), "%s: sampled flag inside fn", c.name)
					if parent := trace.SpanContextFromContext(c.ctx); parent.IsValid() {
						require.Equal(t, parent.TraceID(), sc.TraceID(), "%s: same trace", c.name)
					}
					return nil
				}))
				require.True(t, called)
				recorded := false
				for _, s := range a.rec.Ended() {
					recorded = recorded || s.Name() == c.name
				}
				require.Equal(t, c.want, recorded, "%s recorded", c.name)
			}
		})
	}
}

func TestRunUnsampledAllocatesNothing(t *testing.T) {
	startApp(t, nil)
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, Remote: true,
	}))
	fn := func(context.Context) error { return nil }
	allocs := testing.AllocsPerRun(100, func() { _ = Run(ctx, "unsampled", fn) })
	require.Zero(t, allocs, "Run under an unsampled parent allocates nothing")
}

// An exporter name fxtracing does not build is a config error that says
// how to plug another exporter in: fxtracing does not hand names to
// contrib's autoexport, whose registry links every metric and log exporter.
func TestUnknownExporterSaysHowToAddOne(t *testing.T) {
	t.Parallel()
	_, err := newApp(t, []string{"OTEL_TRACES_EXPORTER=otlp,zipkin"})
	require.ErrorContains(t, err, `invalid OTEL_TRACES_EXPORTER="otlp,zipkin"`)
	require.ErrorContains(t, err, "fxtracing.AsSpanProcessor")
}

func TestNewTracerProviderWithoutFx(t *testing.T) {
	t.Parallel()
	src, err := fxcore.NewSourceFrom("", []string{"OTEL_TRACES_SAMPLER=always_on"})
	require.NoError(t, err)
	rec := tracetest.NewSpanRecorder()
	core, logs := observer.New(zapcore.InfoLevel)
	tp, err := NewTracerProvider(context.Background(), Config{}, TracerProviderOptions{
		Source:     src,
		Info:       fxcore.ServiceInfo{Name: "plain", Environment: "development"},
		Processors: []sdktrace.SpanProcessor{rec},
		Logger:     zap.New(core),
	})
	require.NoError(t, err)
	_, span := tp.Tracer("t").Start(context.Background(), "plain-span")
	span.End()
	require.NoError(t, tp.Shutdown(context.Background()))
	require.Len(t, rec.Ended(), 1)
	started := logs.FilterMessage("tracing started").All()
	require.Len(t, started, 1, "the same start line as the module's")
	require.Equal(t, "none", started[0].ContextMap()["exporter"], "development: none by default")

	_, err = NewTracerProvider(context.Background(), Config{QueueSize: 10, BatchSize: 20}, TracerProviderOptions{Source: src})
	require.EqualError(t, err, "fxtracing: invalid batch_size=20: want at most queue_size", "the config is validated")
	var fe *fxcore.FieldError
	require.ErrorAs(t, err, &fe)
}

// The zero options read the process environment and build the development
// defaults: no exporter unless OTEL_TRACES_EXPORTER names one.
func TestNewTracerProviderZeroOptions(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	t.Setenv("OTEL_PROPAGATORS", "b3")
	tp, err := NewTracerProvider(context.Background(), Config{}, TracerProviderOptions{})
	require.NoError(t, err)
	_, span := tp.Tracer("t").Start(context.Background(), "dropped")
	require.False(t, span.SpanContext().IsSampled(), "OTEL_TRACES_SAMPLER from the process environment")
	span.End()
	require.NoError(t, tp.Shutdown(context.Background()))

	prop, err := NewPropagator(nil)
	require.NoError(t, err)
	require.Equal(t, []string{"b3"}, prop.Fields(), "OTEL_PROPAGATORS from the process environment")
}
