package fxmonitor

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// MetricsHandler serves the registry in the Prometheus text format, or
// OpenMetrics (with exemplars, such as trace ids on histogram buckets) when
// the scraper asks for it. log may be nil.
func MetricsHandler(g prometheus.Gatherer, log *zap.Logger) http.Handler {
	if log == nil {
		log = zap.NewNop()
	}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorHandling:     promhttp.ContinueOnError,
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
	})
}

// RegisterCollector registers c, with an error that names its metrics when
// they clash with metrics already registered.
func RegisterCollector(reg prometheus.Registerer, c prometheus.Collector) error {
	err := reg.Register(c)
	if err == nil {
		return nil
	}
	names, verb := "its metrics", "are"
	if n := metricNames(c); len(n) > 0 {
		names, verb = "metric "+strings.Join(n, ", "), "is"
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		return fmt.Errorf("fxmonitor: register collector %T: %s %s already registered: %w", c, names, verb, err)
	}
	return fmt.Errorf("fxmonitor: register collector %T (%s): %w", c, names, err)
}

// metricNames lists, quoted and sorted, the names of the metric families a
// collector has series of. They come from the client library's public API:
// the collector is registered on a registry of its own and gathered (only
// on this error path), so nothing depends on the text of a Desc. A
// collector without series yet (a vector no label values were used on)
// has no names to give.
func metricNames(c prometheus.Collector) []string {
	reg := prometheus.NewRegistry()
	if reg.Register(c) != nil {
		return nil
	}
	mfs, _ := reg.Gather() // what it could gather, even with an error
	out := make([]string, 0, len(mfs))
	for _, mf := range mfs {
		out = append(out, fmt.Sprintf("%q", mf.GetName()))
	}
	sort.Strings(out)
	return out
}
