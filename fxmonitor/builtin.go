package fxmonitor

import (
	"context"
	"fmt"
	"strings"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/mem"
)

// builtinChecks returns the enabled built-in checks: disk and memory usage
// under their thresholds, and no open circuit breaker; all non-critical
// readiness checks.
func builtinChecks(cfg Config, breakers *Breakers) []Check {
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
func BreakersCheck(name string, b *Breakers) Check {
	return Check{Name: name, Kinds: Readiness, Func: func(context.Context) error {
		if open := b.openBreakers(); len(open) > 0 {
			return fmt.Errorf("circuit breakers open: %s", strings.Join(open, ", "))
		}
		return nil
	}}
}
