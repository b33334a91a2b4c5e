package fxmonitor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"go.uber.org/zap"
)

// SystemMetrics samples the host with gopsutil in the background into
// gauges (utilisations are ratios in 0..1):
//
//	marty_system_cpu_utilization_ratio       busy share of all CPUs since the last sample
//	marty_system_memory_utilization_ratio    used share of system memory
//	marty_system_memory_used_bytes           used system memory
//	marty_system_memory_total_bytes          total system memory
//	marty_system_disk_utilization_ratio{path} used share of the file system at path
//	marty_system_load1                       1-minute load average
//
// Scrapes read the last sample; they never touch the host.
type SystemMetrics struct {
	path     string
	interval time.Duration
	log      *zap.Logger

	cpu, memRatio, memUsed, memTotal, disk, load1 prometheus.Gauge

	mu       sync.Mutex
	lastBusy float64
	lastAll  float64

	cancel context.CancelFunc
	done   chan struct{}
}

// SystemOptions configures NewSystemMetrics. The zero value is ready to use.
type SystemOptions struct {
	// Registerer receives the marty_system_* gauges; nil: metrics are not
	// registered (Sample still updates them).
	Registerer prometheus.Registerer
	// Logger logs sampling problems (once); nil: zap.NewNop().
	Logger *zap.Logger
}

// NewSystemMetrics validates cfg and returns the system gauges, sampled
// every cfg.System.Interval with the file system at cfg.Disk.Path. Start
// samples; fxmonitor.Module starts it when cfg.System.Enabled.
func NewSystemMetrics(cfg Config, opts SystemOptions) (*SystemMetrics, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fxmonitor: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	path := cfg.Disk.Path
	if path == "" {
		path = "."
	}
	g := func(name, help string, labels prometheus.Labels) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	s := &SystemMetrics{
		path: path, interval: cfg.System.Interval, log: opts.Logger,
		cpu:      g(metricCPU, "Busy share of all CPUs between samples (0..1).", nil),
		memRatio: g(metricMemRatio, "Used share of system memory (0..1).", nil),
		memUsed:  g(metricMemUsed, "Used system memory in bytes.", nil),
		memTotal: g(metricMemTotal, "Total system memory in bytes.", nil),
		disk:     g(metricDisk, "Used share of the file system (0..1).", prometheus.Labels{"path": path}),
		load1:    g(metricLoad1, "One-minute load average.", nil),
	}
	if opts.Registerer == nil {
		return s, nil
	}
	for _, m := range []struct {
		name string
		g    prometheus.Gauge
	}{{metricCPU, s.cpu}, {metricMemRatio, s.memRatio}, {metricMemUsed, s.memUsed}, {metricMemTotal, s.memTotal},
		{metricDisk, s.disk}, {metricLoad1, s.load1}} {
		if err := opts.Registerer.Register(m.g); err != nil {
			return nil, fmt.Errorf("fxmonitor: register system metric %q: %w", m.name, err)
		}
	}
	return s, nil
}

// The system gauges.
const (
	metricCPU      = "marty_system_cpu_utilization_ratio"
	metricMemRatio = "marty_system_memory_utilization_ratio"
	metricMemUsed  = "marty_system_memory_used_bytes"
	metricMemTotal = "marty_system_memory_total_bytes"
	metricDisk     = "marty_system_disk_utilization_ratio"
	metricLoad1    = "marty_system_load1"
)

// Sample reads the host once and updates the gauges.
func (s *SystemMetrics) Sample(ctx context.Context) error {
	var firstErr error
	keep := func(what string, err error) {
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("fxmonitor: sample %s: %w", what, err)
		}
	}
	if ts, err := cpu.TimesWithContext(ctx, false); err == nil && len(ts) > 0 {
		all := cpuSeconds(ts[0])
		busy := all - ts[0].Idle - ts[0].Iowait
		s.mu.Lock()
		dAll, dBusy := all-s.lastAll, busy-s.lastBusy
		s.lastAll, s.lastBusy = all, busy
		s.mu.Unlock()
		if dAll > 0 {
			s.cpu.Set(clamp01(dBusy / dAll))
		}
	} else {
		keep("cpu", err)
	}
	if v, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		s.memRatio.Set(clamp01(v.UsedPercent / 100))
		s.memUsed.Set(float64(v.Used))
		s.memTotal.Set(float64(v.Total))
	} else {
		keep("memory", err)
	}
	if u, err := disk.UsageWithContext(ctx, s.path); err == nil {
		s.disk.Set(clamp01(u.UsedPercent / 100))
	} else {
		keep("disk "+s.path, err)
	}
	if l, err := load.AvgWithContext(ctx); err == nil {
		s.load1.Set(l.Load1)
	} else {
		keep("load", err)
	}
	return firstErr
}

// cpuSeconds is the time of every CPU state. Guest time is left out: the
// kernel counts it in user time already.
func cpuSeconds(t cpu.TimesStat) float64 {
	return t.User + t.System + t.Idle + t.Nice + t.Iowait + t.Irq + t.Softirq + t.Steal
}

func clamp01(v float64) float64 {
	return max(0, min(1, v))
}

// Start samples once (so the gauges are there from the first scrape) and
// then every interval until Stop. A host that lacks a source (no load
// average, say) is logged, not an error: Start returns nil.
func (s *SystemMetrics) Start(ctx context.Context) error {
	if err := s.Sample(ctx); err != nil {
		s.log.Warn("system metrics", zap.Error(err))
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.interval)
		defer t.Stop()
		warned := false
		for {
			select {
			case <-loopCtx.Done():
				return
			case <-t.C:
				if err := s.Sample(loopCtx); err != nil && !warned && loopCtx.Err() == nil {
					warned = true // once: a host that lacks a source lacks it every time
					s.log.Warn("system metrics", zap.Error(err))
				}
			}
		}
	}()
	return nil
}

// Stop ends the sampling.
func (s *SystemMetrics) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fxmonitor: stop system metrics: %w", ctx.Err())
	}
}
