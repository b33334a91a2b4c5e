package fxmonitor

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

// builtinChecks returns the enabled built-in checks: disk and memory usage
// under their thresholds, and no open circuit breaker; all non-critical
// readiness checks.
func builtinChecks(cfg Config, breakers *breaker.Breakers) []Check {
	var out []Check
	if cfg.Disk.Enabled {
		out = append(out, DiskCheck("disk", cfg.Disk.Path, cfg.Disk.MaxPercent))
	}
	if cfg.Memory.Enabled {
		out = append(out, MemoryCheck("memory", cfg.Memory.MaxPercent))
	}
	if cfg.BreakerCheck && breakers != nil {
		out = append(out, BreakersCheck("circuit_breakers", breakers))
	}
	return out
}

// DiskCheck fails when the file system holding path is more than maxPercent
// used. It is a non-critical readiness check.
func DiskCheck(name, path string, maxPercent float64) Check {
	return Check{Name: name, Kinds: Readiness, Func: func(ctx context.Context) error {
		u, err := disk.UsageWithContext(ctx, path)
		if err != nil {
			return fmt.Errorf("disk usage of %s: %w", path, err)
		}
		if u.UsedPercent > maxPercent {
			return fmt.Errorf("disk %s is %.1f%% used, above %.0f%%", path, u.UsedPercent, maxPercent)
		}
		return nil
	}}
}

// MemoryCheck fails when more than maxPercent of the system's memory is
// used. It is a non-critical readiness check.
func MemoryCheck(name string, maxPercent float64) Check {
	return Check{Name: name, Kinds: Readiness, Func: func(ctx context.Context) error {
		v, err := mem.VirtualMemoryWithContext(ctx)
		if err != nil {
			return fmt.Errorf("memory usage: %w", err)
		}
		if v.UsedPercent > maxPercent {
			return fmt.Errorf("memory is %.1f%% used, above %.0f%%", v.UsedPercent, maxPercent)
		}
		return nil
	}}
}

// BreakersCheck fails while any breaker is open. It is a non-critical
// readiness check: the app is degraded, not down.
func BreakersCheck(name string, b *breaker.Breakers) Check {
	return Check{Name: name, Kinds: Readiness, Func: func(context.Context) error {
		if open := b.Open(); len(open) > 0 {
			return fmt.Errorf("circuit breakers open: %s", strings.Join(open, ", "))
		}
		return nil
	}}
}

// The built-in alert rules on failing health checks (CheckAlertRules).
const (
	// AlertCheckFailing fires while a critical check fails: its probes
	// answer 503 and the pod gets no traffic.
	AlertCheckFailing = "MartyHealthCheckFailing"
	// AlertCheckDegraded fires while a non-critical check fails: the pod
	// keeps serving (readiness stays 200) but a dependency it absorbs is
	// down, so some work waits.
	AlertCheckDegraded = "MartyHealthCheckDegraded"
)

// CheckAlertRules returns the built-in alert rules on
// marty_health_check_failing: AlertCheckFailing (severity critical) for
// critical checks and AlertCheckDegraded (severity warning) for the others,
// each firing once a check has failed for the given duration, with the
// check's name in the check label. Module adds them when the app has checks
// (MARTY_MONITOR_CHECK_ALERTS, MARTY_MONITOR_CHECK_ALERT_FOR).
func CheckAlertRules(after time.Duration) []AlertRule {
	return []AlertRule{
		{
			Name: AlertCheckFailing, Metric: "marty_health_check_failing", Labels: map[string]string{"critical": "true"},
			Op: OpEqual, Threshold: 1, For: after, Severity: "critical",
			Summary: "Critical health check {{ $labels.check }} is failing: the pod is not ready",
			Description: "The critical check {{ $labels.check }} keeps failing, so its probes answer 503 and the pod gets no traffic. " +
				"GET /readyz?verbose on the admin server shows its error.",
		},
		{
			Name: AlertCheckDegraded, Metric: "marty_health_check_failing", Labels: map[string]string{"critical": "false"},
			Op: OpEqual, Threshold: 1, For: after, Severity: "warning",
			Summary: "Health check {{ $labels.check }} is failing: the service is degraded",
			Description: "The non-critical check {{ $labels.check }} keeps failing. Readiness stays up and requests are served, " +
				"but what depends on it waits (events stay in the outbox while the broker is down, say). " +
				"GET /readyz?verbose on the admin server shows its error.",
		},
	}
}
