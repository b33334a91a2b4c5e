package fxmonitor

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// MetricsHandler serves the registry in the Prometheus text format, or
// OpenMetrics (with exemplars, such as trace ids on histogram buckets) when
// the scraper asks for it.
func MetricsHandler(g prometheus.Gatherer, log *zap.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
	})
}

type collectorParams struct {
	fx.In
	Collectors []prometheus.Collector `group:"martyfx.monitor.collectors"`
	Registry   prometheus.Registerer
}

func registerCollectors(p collectorParams) error {
	for _, c := range p.Collectors {
		if err := RegisterCollector(p.Registry, c); err != nil {
			return err
		}
	}
	return nil
}

// RegisterCollector registers c, with an error that names its metrics when
// they are already registered.
func RegisterCollector(reg prometheus.Registerer, c prometheus.Collector) error {
	err := reg.Register(c)
	if err == nil {
		return nil
	}
	names := strings.Join(metricNames(c), ", ")
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return fmt.Errorf("fxmonitor: register collector %T: metric %s is already registered: %w", c, names, err)
	}
	return fmt.Errorf("fxmonitor: register collector %T (metrics %s): %w", c, names, err)
}

var fqNameRe = regexp.MustCompile(`fqName: "([^"]*)"`)

// metricNames lists the fully-qualified names a collector describes.
func metricNames(c prometheus.Collector) []string {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	seen := map[string]bool{}
	for d := range ch {
		if m := fqNameRe.FindStringSubmatch(d.String()); m != nil {
			seen[m[1]] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, fmt.Sprintf("%q", n))
	}
	sort.Strings(out)
	return out
}
