package fxtracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/martyfx/martyfx/fxcore"
)

// newResource describes the service for its telemetry: what the host, OS,
// process and container detectors find, then OTEL_RESOURCE_ATTRIBUTES, then
// the identity from info (service.name, service.version,
// service.instance.id, deployment.environment.name), later ones winning.
// One exception follows the OpenTelemetry spec: a service.name in
// OTEL_RESOURCE_ATTRIBUTES is kept when no name was configured
// (MARTY_SERVICE_NAME, OTEL_SERVICE_NAME or the config file).
//
// The detectors and fxtracing use the semantic conventions of the SDK's own
// version, so the schema URLs never conflict. A detector that finds nothing
// (no container, say) is not an error; the returned error is then nil.
// Process command-line arguments are left out on purpose: they may hold
// secrets.
func newResource(ctx context.Context, src *fxcore.Source, info fxcore.ServiceInfo) (*resource.Resource, error) {
	fromEnv, err := parseResourceAttributes(env(src, envResourceAttributes))
	if err != nil {
		return nil, err
	}
	identity := []attribute.KeyValue{
		semconv.ServiceVersion(info.Version),
		semconv.ServiceInstanceID(info.InstanceID),
		semconv.DeploymentEnvironmentNameKey.String(info.Environment),
	}
	if !hasKey(fromEnv, semconv.ServiceNameKey) || nameConfigured(src) {
		identity = append(identity, semconv.ServiceName(info.Name))
	}
	r, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithOS(),
		resource.WithProcessPID(),
		resource.WithProcessExecutableName(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithProcessRuntimeDescription(),
		resource.WithContainer(),
		resource.WithAttributes(fromEnv...),
		resource.WithAttributes(identity...),
	)
	if errors.Is(err, resource.ErrPartialResource) && r != nil {
		return r, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fxtracing: build resource: %w", err)
	}
	return r, nil
}

func hasKey(attrs []attribute.KeyValue, key attribute.Key) bool {
	for _, kv := range attrs {
		if kv.Key == key {
			return true
		}
	}
	return false
}

// nameConfigured reports whether the service name was set rather than
// derived from the binary's name.
func nameConfigured(src *fxcore.Source) bool {
	if env(src, envServiceName) != "" {
		return true
	}
	svc, err := fxcore.Load(src, "service", fxcore.ServiceConfig{})
	return err != nil || svc.Name != ""
}

// parseResourceAttributes reads key1=value1,key2=value2 with percent-encoded
// values, as the OpenTelemetry spec defines OTEL_RESOURCE_ATTRIBUTES.
func parseResourceAttributes(v string) ([]attribute.KeyValue, error) {
	if v == "" {
		return nil, nil
	}
	var out []attribute.KeyValue
	for i, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("fxtracing: invalid %s: entry %d (%q) is not key=value", envResourceAttributes, i+1, pair)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("fxtracing: invalid %s: the value of %s is not percent-encoded correctly", envResourceAttributes, k)
		}
		out = append(out, attribute.String(k, dv))
	}
	return out, nil
}
