package fxtracing

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/martyfx/martyfx/fxcore"
)

// The OpenTelemetry variables fxtracing reads (from the fxcore.Source, which
// is the process environment in a real app).
const (
	envSDKDisabled        = "OTEL_SDK_DISABLED"
	envExporter           = "OTEL_TRACES_EXPORTER"
	envSampler            = "OTEL_TRACES_SAMPLER"
	envSamplerArg         = "OTEL_TRACES_SAMPLER_ARG"
	envPropagators        = "OTEL_PROPAGATORS"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	envServiceName        = "OTEL_SERVICE_NAME"
	envBSPQueue           = "OTEL_BSP_MAX_QUEUE_SIZE"
	envBSPBatch           = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"
	envBSPDelay           = "OTEL_BSP_SCHEDULE_DELAY"
	envBSPTimeout         = "OTEL_BSP_EXPORT_TIMEOUT"
	envOTLPPrefix         = "OTEL_EXPORTER_OTLP_"
	envOTLPTracesPrefix   = "OTEL_EXPORTER_OTLP_TRACES_"
)

const (
	protoGRPC = "grpc"
	protoHTTP = "http/protobuf"
)

// settings is everything the provider is built from, resolved from Config,
// the Source's OTEL_* variables and the ServiceInfo. Resolving fails fast
// with the name of the bad variable; nothing is opened here.
type settings struct {
	disabled    bool
	exporters   []string // exporter names; empty means none
	otlp        otlpSettings
	sampler     sdktrace.Sampler
	samplerDesc string
	fast        fastPath
	propagators []string
	batch       batchSettings
}

type batchSettings struct {
	queueSize, batchSize int
	delay, timeout       time.Duration
}

// fastPath says which spans the sampler is known to drop, so that Run can
// skip making a non-recording span for them.
type fastPath struct {
	// dropsUnsampledKids: a child of an unsampled parent is dropped
	// (parent-based samplers, always_off, the SDK disabled).
	dropsUnsampledKids bool
}

// otlpSettings are the OTEL_EXPORTER_OTLP_* values for the traces signal.
type otlpSettings struct {
	protocol    string
	endpoint    string // "" for the exporter's default
	endpointURL bool   // endpoint has a scheme (and maybe a path)
	headers     map[string]string
	timeout     time.Duration // 0 for the exporter's default
	compression string        // "", "gzip" or "none"
	insecure    bool
}

func env(src *fxcore.Source, name string) string {
	v, _ := src.Env(name)
	return strings.TrimSpace(v)
}

// otlpEnv returns the traces-specific variable when set, else the generic
// one, with the name of the variable the value came from.
func otlpEnv(src *fxcore.Source, leaf string) (value, name string) {
	if v := env(src, envOTLPTracesPrefix+leaf); v != "" {
		return v, envOTLPTracesPrefix + leaf
	}
	return env(src, envOTLPPrefix+leaf), envOTLPPrefix + leaf
}

func invalidEnv(name, value, want string) error {
	return fmt.Errorf("fxtracing: invalid %s=%q: want %s", name, value, want)
}

func resolve(cfg Config, src *fxcore.Source, info fxcore.ServiceInfo) (settings, error) {
	var s settings
	if v := env(src, envSDKDisabled); v != "" {
		disabled, err := strconv.ParseBool(v)
		if err != nil {
			return s, invalidEnv(envSDKDisabled, v, "true or false")
		}
		s.disabled = disabled
	}
	var err error
	if s.exporters, err = resolveExporters(src, info); err != nil {
		return s, err
	}
	if s.disabled {
		s.exporters = nil
	}
	if slices.Contains(s.exporters, "otlp") {
		if s.otlp, err = resolveOTLP(src); err != nil {
			return s, err
		}
	}
	if s.sampler, s.samplerDesc, s.fast, err = resolveSampler(src); err != nil {
		return s, err
	}
	if s.disabled {
		s.sampler, s.samplerDesc, s.fast = sdktrace.NeverSample(), "disabled", fastPath{dropsUnsampledKids: true}
	}
	s.propagators = resolvePropagatorNames(src)
	if s.batch, err = resolveBatch(cfg, src); err != nil {
		return s, err
	}
	return s, nil
}

// builtinExporters are the OTEL_TRACES_EXPORTER values fxtracing builds,
// those of the OpenTelemetry specification for traces. Another exporter
// comes as a span processor (AsSpanProcessor): going through
// contrib's autoexport instead would link its metric and log exporters
// into every service.
var builtinExporters = []string{"otlp", "console", "none"}

func resolveExporters(src *fxcore.Source, info fxcore.ServiceInfo) ([]string, error) {
	raw := env(src, envExporter)
	if raw == "" {
		if info.IsDevelopment() {
			return nil, nil
		}
		return []string{"otlp"}, nil
	}
	var names []string
	for name := range strings.SplitSeq(raw, ",") {
		name = strings.TrimSpace(name)
		if name == "" || name == "none" || slices.Contains(names, name) {
			continue
		}
		if !slices.Contains(builtinExporters, name) {
			return nil, invalidEnv(envExporter, raw,
				"a comma-separated list of otlp, console, none (another exporter: give its span processor to fxtracing.AsSpanProcessor)")
		}
		names = append(names, name)
	}
	return names, nil
}

func resolveOTLP(src *fxcore.Source) (otlpSettings, error) {
	o := otlpSettings{protocol: protoHTTP}
	if v, name := otlpEnv(src, "PROTOCOL"); v != "" {
		if v != protoGRPC && v != protoHTTP {
			return o, invalidEnv(name, v, `one of "grpc", "http/protobuf"`)
		}
		o.protocol = v
	}

	if v := env(src, envOTLPTracesPrefix+"ENDPOINT"); v != "" {
		u, isURL, err := parseEndpoint(envOTLPTracesPrefix+"ENDPOINT", v)
		if err != nil {
			return o, err
		}
		o.endpoint, o.endpointURL = u, isURL
	} else if v := env(src, envOTLPPrefix+"ENDPOINT"); v != "" {
		u, isURL, err := parseEndpoint(envOTLPPrefix+"ENDPOINT", v)
		if err != nil {
			return o, err
		}
		if isURL && o.protocol == protoHTTP {
			// The generic endpoint is a base URL: the signal path is appended.
			parsed, _ := url.Parse(u)
			parsed.Path = strings.TrimSuffix(parsed.Path, "/") + "/v1/traces"
			u = parsed.String()
		}
		o.endpoint, o.endpointURL = u, isURL
	}

	headers, err := parseHeaders(src, envOTLPPrefix+"HEADERS", nil)
	if err != nil {
		return o, err
	}
	if o.headers, err = parseHeaders(src, envOTLPTracesPrefix+"HEADERS", headers); err != nil {
		return o, err
	}

	if v, name := otlpEnv(src, "TIMEOUT"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return o, invalidEnv(name, v, "a positive number of milliseconds")
		}
		o.timeout = time.Duration(ms) * time.Millisecond
	}
	if v, name := otlpEnv(src, "COMPRESSION"); v != "" {
		if v != "gzip" && v != "none" {
			return o, invalidEnv(name, v, `one of "gzip", "none"`)
		}
		o.compression = v
	}
	if v, name := otlpEnv(src, "INSECURE"); v != "" {
		insecure, err := strconv.ParseBool(v)
		if err != nil {
			return o, invalidEnv(name, v, "true or false")
		}
		o.insecure = insecure
	}
	return o, nil
}

// parseEndpoint accepts a URL with an http or https scheme, or host:port.
func parseEndpoint(name, v string) (string, bool, error) {
	if !strings.Contains(v, "://") {
		return v, false, nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false, invalidEnv(name, redactURL(v), "an http:// or https:// URL, or host:port")
	}
	return v, true, nil
}

// redactURL drops user info, which may hold a credential, from an endpoint
// before it reaches a log or an error.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil {
		if i := strings.LastIndex(v, "@"); i >= 0 {
			return "…" + v[i:]
		}
		return v
	}
	if u.User != nil {
		u.User = nil
	}
	return u.String()
}

// parseHeaders reads a W3C-baggage-style list key=value,key2=value2 with
// percent-encoded values, over base. Values never reach errors: they are
// often credentials.
func parseHeaders(src *fxcore.Source, name string, base map[string]string) (map[string]string, error) {
	v := env(src, name)
	if v == "" {
		return base, nil
	}
	out := map[string]string{}
	for k, val := range base {
		out[k] = val
	}
	for i, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("fxtracing: invalid %s: entry %d is not key=value", name, i+1)
		}
		dk, err1 := url.PathUnescape(k)
		dv, err2 := url.PathUnescape(strings.TrimSpace(val))
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("fxtracing: invalid %s: entry %d (%s) is not percent-encoded correctly", name, i+1, k)
		}
		out[dk] = dv
	}
	return out, nil
}

var samplerNames = []string{
	"always_on", "always_off", "traceidratio",
	"parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
}

func resolveSampler(src *fxcore.Source) (sdktrace.Sampler, string, fastPath, error) {
	name := env(src, envSampler)
	if name == "" {
		name = "parentbased_always_on"
	}
	ratio := func() (float64, error) {
		v := env(src, envSamplerArg)
		if v == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, invalidEnv(envSamplerArg, v, "a sampling ratio between 0 and 1")
		}
		return r, nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), name, fastPath{}, nil
	case "always_off":
		return sdktrace.NeverSample(), name, fastPath{dropsUnsampledKids: true}, nil
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), name, fastPath{dropsUnsampledKids: true}, nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), name, fastPath{dropsUnsampledKids: true}, nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, "", fastPath{}, err
		}
		desc := name + "(" + strconv.FormatFloat(r, 'g', -1, 64) + ")"
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), desc, fastPath{}, nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), desc, fastPath{dropsUnsampledKids: true}, nil
	}
	quoted := make([]string, len(samplerNames))
	for i, n := range samplerNames {
		quoted[i] = strconv.Quote(n)
	}
	return nil, "", fastPath{}, invalidEnv(envSampler, name, "one of "+strings.Join(quoted, ", "))
}

func resolvePropagatorNames(src *fxcore.Source) []string {
	raw := env(src, envPropagators)
	if raw == "" {
		return []string{"tracecontext", "baggage"}
	}
	var names []string
	for name := range strings.SplitSeq(raw, ",") {
		if name = strings.TrimSpace(name); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func resolveBatch(cfg Config, src *fxcore.Source) (batchSettings, error) {
	b := batchSettings{
		queueSize: sdktrace.DefaultMaxQueueSize,
		batchSize: sdktrace.DefaultMaxExportBatchSize,
		delay:     sdktrace.DefaultScheduleDelay * time.Millisecond,
		timeout:   sdktrace.DefaultExportTimeout * time.Millisecond,
	}
	positive := func(name string, dst *int) error {
		v := env(src, name)
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return invalidEnv(name, v, "a positive integer")
		}
		*dst = n
		return nil
	}
	millis := func(name string, dst *time.Duration) error {
		var n int
		if err := positive(name, &n); err != nil {
			return invalidEnv(name, env(src, name), "a positive number of milliseconds")
		}
		if n > 0 {
			*dst = time.Duration(n) * time.Millisecond
		}
		return nil
	}
	if cfg.QueueSize > 0 {
		b.queueSize = cfg.QueueSize
	} else if err := positive(envBSPQueue, &b.queueSize); err != nil {
		return b, err
	}
	if cfg.BatchSize > 0 {
		b.batchSize = cfg.BatchSize
	} else if err := positive(envBSPBatch, &b.batchSize); err != nil {
		return b, err
	}
	if cfg.ScheduleDelay > 0 {
		b.delay = cfg.ScheduleDelay
	} else if err := millis(envBSPDelay, &b.delay); err != nil {
		return b, err
	}
	if cfg.ExportTimeout > 0 {
		b.timeout = cfg.ExportTimeout
	} else if err := millis(envBSPTimeout, &b.timeout); err != nil {
		return b, err
	}
	if b.batchSize > b.queueSize {
		return b, fmt.Errorf("fxtracing: batch size %d is larger than the queue size %d: lower %s (or %s) or raise %s (or %s)",
			b.batchSize, b.queueSize, fxcore.EnvName("tracing", "batch_size"), envBSPBatch,
			fxcore.EnvName("tracing", "queue_size"), envBSPQueue)
	}
	return b, nil
}
