package service

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxmonitor/health"
	"github.com/martyfx/martyfx/fxrepo"
)

// MetricOrders is the example's own counter: orders created, confirmed (by
// the order saga) and cancelled, by action.
const MetricOrders = "orders_total"

// Metrics holds the service's business metrics.
type Metrics struct {
	vec       *prometheus.CounterVec
	created   prometheus.Counter
	confirmed prometheus.Counter
	cancelled prometheus.Counter
}

// NewMetrics builds the counters; the Module registers them on the app
// registry with fxmonitor.AsCollector.
func NewMetrics() *Metrics {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricOrders,
		Help: "Orders created, confirmed and cancelled by this replica, by action.",
	}, []string{"action"})
	return &Metrics{vec: vec, created: vec.WithLabelValues("created"),
		confirmed: vec.WithLabelValues("confirmed"), cancelled: vec.WithLabelValues("cancelled")}
}

// Collector is what fxmonitor.AsCollector registers.
func (m *Metrics) Collector() prometheus.Collector { return m.vec }

// CancellationAlert fires when more than one order a second is cancelled on
// a replica for five minutes: something upstream is likely wrong. It is
// evaluated in process (GET /alerts on the admin port) and exported for
// Prometheus at /alerts/rules.yaml.
func CancellationAlert() fxmonitor.AlertRule {
	return fxmonitor.AlertRule{
		Name:        "OrdersCancellationRateHigh",
		Metric:      MetricOrders,
		Labels:      map[string]string{"action": "cancelled"},
		Rate:        5 * time.Minute,
		Op:          fxmonitor.OpGreater,
		Threshold:   1,
		For:         5 * time.Minute,
		Severity:    "warning",
		Summary:     "Orders are being cancelled at {{ $value }}/s",
		Description: "More than one cancellation a second for 5 minutes on {{ $labels.instance }}.",
	}
}

// StoreCheck is a critical readiness check: the orders table answers a
// query (the database is up and the migrations ran).
func StoreCheck(db *gorm.DB) fxmonitor.Check {
	return fxmonitor.Check{
		Name:     "orders-store",
		Kinds:    fxmonitor.Readiness,
		Critical: true,
		Timeout:  2 * time.Second,
		Interval: 5 * time.Second,
		Func: func(ctx context.Context) error {
			var n int64
			if err := db.WithContext(ctx).Raw("SELECT COUNT(*) FROM (SELECT 1 FROM orders LIMIT 1) t").Scan(&n).Error; err != nil {
				return fmt.Errorf("orders: query the orders table: %w", err)
			}
			return nil
		},
	}
}

// Summary is the body of GET /v1/summary.
type Summary struct {
	Service   string           `json:"service"`
	Instance  string           `json:"instance"`
	Ready     bool             `json:"ready"`
	Readiness health.Verdict   `json:"readiness"`
	Orders    map[string]int64 `json:"orders"`
	// Checks is each readiness check's status by name, and nothing more:
	// the route is public, and a check's error may name hosts, users and
	// databases (the admin server's /readyz?verbose and /statusz show it).
	Checks map[string]health.Status `json:"checks"`
}

// NewSummaryHandler serves GET /v1/summary, a hand-written fxhttp route next
// to the gateway: order counts by status plus the replica's readiness. It
// answers 503 (with the same body) when the replica is not ready, so a
// dashboard or a smoke test sees a degraded replica as such. Errors go
// through fxhttp.WriteError: a database that is down is 503 with
// Retry-After, anything unclassified 500 "internal error (ref <id>)".
func NewSummaryHandler(db *gorm.DB, h *health.Health, info fxcore.ServiceInfo) http.Handler {
	orders := fxrepo.NewRepository[Order, string](db)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		report := h.Report(ctx, health.Readiness)
		s := Summary{
			Service: info.Name, Instance: info.InstanceID,
			Ready: report.Status.Healthy(), Readiness: report.Status,
			Orders: map[string]int64{}, Checks: make(map[string]health.Status, len(report.Checks)),
		}
		for _, c := range report.Checks {
			s.Checks[c.Name] = c.Status
		}
		for _, st := range []string{StatusPending, StatusConfirmed, StatusCancelled} {
			n, err := orders.Count(ctx, func(db *gorm.DB) *gorm.DB { return db.Where("status = ?", st) })
			if err != nil {
				fxhttp.WriteError(w, r, fmt.Errorf("orders: count %s orders: %w", st, err))
				return
			}
			s.Orders[st] = n
		}
		code := http.StatusOK
		if !s.Ready {
			code = http.StatusServiceUnavailable
		}
		fxhttp.WriteJSON(w, code, s)
	})
}
