package load

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// The histograms record nanoseconds from 0 to an hour with three
// significant digits (a recorded value is within 0.1% of the measured one);
// a longer operation is recorded as an hour.
const (
	maxTrackable = int64(time.Hour)
	sigFigures   = 3
)

func newHistogram() *hdrhistogram.Histogram { return hdrhistogram.New(1, maxTrackable, sigFigures) }

// Run drives target as opts say (a bound, For or Count, is required):
// an optional warm-up, whose measurements are dropped, then the measured
// run, and returns what it measured. It fails on bad options. When ctx ends
// first, Run stops starting operations, waits for those in flight, and
// returns what it measured so far with an error wrapping ctx's cause;
// operations cut short by it are counted in Result.Aborted, not as failed.
//
// Operations run on the caller's process, so CPU and allocations per
// operation are the whole process's during the run (the driver's, the
// client's and, for an app under test in the same process, the server's):
// do not run other tests in parallel with a load test.
func Run(ctx context.Context, target Target, opts ...Option) (*Result, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if target.Do == nil {
		return nil, fmt.Errorf("load: target %q has no Do function", target.Name)
	}
	if target.Name == "" {
		target.Name = "target"
	}
	if err := warmUp(ctx, target, cfg); err != nil {
		return nil, err
	}
	res := runPhase(ctx, target, cfg)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load: %s: stopped after %d operations: %w", target.Name, res.Count, context.Cause(ctx))
	}
	return res, nil
}

// warmUp runs the warm-up phase, if any, and drops its measurements.
func warmUp(ctx context.Context, target Target, cfg config) error {
	if cfg.warmup == 0 && cfg.warmupOps == 0 {
		return nil
	}
	w := cfg
	w.duration, w.count = cfg.warmup, cfg.warmupOps
	runPhase(ctx, target, w)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load: %s: stopped during the warm-up: %w", target.Name, context.Cause(ctx))
	}
	return nil
}

// shard is what a group of workers records into, under its own lock, so
// that workers on different cores do not contend; the shards are merged at
// the end.
type shard struct {
	mu       sync.Mutex
	hist     *hdrhistogram.Histogram
	late     *hdrhistogram.Histogram // open loop: start - intended start
	count    int64
	errs     map[string]int64
	samples  map[string]string
	timeline []int64       // completions per bucket
	last     time.Duration // latest completion, since the start
	_        [64]byte      // keep shards on separate cache lines
}

// phase is one run: the warm-up or the measured run.
type phase struct {
	ctx     context.Context
	target  Target
	cfg     config
	start   time.Time
	shards  []*shard
	stopped atomic.Bool // ctx ended
	claimed atomic.Int64
	aborted atomic.Int64
	workers int
}

func runPhase(ctx context.Context, target Target, cfg config) *Result {
	n := min(cfg.workers, max(4, 2*runtime.GOMAXPROCS(0)))
	p := &phase{ctx: ctx, target: target, cfg: cfg, shards: make([]*shard, n)}
	for i := range p.shards {
		p.shards[i] = &shard{hist: newHistogram(), errs: map[string]int64{}, samples: map[string]string{}}
		if cfg.rate > 0 {
			p.shards[i].late = newHistogram()
		}
	}
	stop := context.AfterFunc(ctx, func() { p.stopped.Store(true) })
	defer stop()
	if ctx.Err() != nil {
		p.stopped.Store(true)
	}

	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := processCPU()
	p.start = time.Now()
	if cfg.rate > 0 {
		p.open()
	} else {
		p.closed()
	}
	end := time.Now()
	cpu := processCPU() - cpu0
	runtime.ReadMemStats(&ms1)
	return p.result(end, cpu, ms1.Mallocs-ms0.Mallocs, ms1.TotalAlloc-ms0.TotalAlloc)
}

// closed runs the workers, each starting an operation as soon as its
// previous one returned.
func (p *phase) closed() {
	var end time.Time
	if p.cfg.duration > 0 {
		end = p.start.Add(p.cfg.duration)
	}
	p.workers = p.cfg.workers
	var wg sync.WaitGroup
	for w := range p.cfg.workers {
		s := p.shards[w%len(p.shards)]
		wg.Go(func() {
			for !p.stopped.Load() {
				if p.cfg.count > 0 && p.claimed.Add(1) > p.cfg.count {
					return
				}
				t0 := time.Now()
				if !end.IsZero() && !t0.Before(end) {
					return
				}
				p.do(s, t0)
			}
		})
	}
	wg.Wait()
}

// open starts operation i at start + i/rate, on an idle worker, or on a new
// one while fewer than Workers run; each operation's latency is measured
// from that intended time, so an operation that had to wait (for the
// pacer, which sleeps in steps, or for a worker) is charged for it.
func (p *phase) open() {
	interval := float64(time.Second) / p.cfg.rate
	tickets := make(chan time.Time)
	done := make(chan struct{})
	var wg sync.WaitGroup
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for i := int64(0); ; i++ {
		if p.cfg.count > 0 && i >= p.cfg.count {
			break
		}
		off := time.Duration(float64(i) * interval)
		if p.cfg.duration > 0 && off >= p.cfg.duration {
			break
		}
		due := p.start.Add(off)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-p.ctx.Done():
			}
		}
		if p.ctx.Err() != nil {
			break
		}
		select {
		case tickets <- due: // an idle worker took it
			continue
		default:
		}
		if p.workers < p.cfg.workers {
			s := p.shards[p.workers%len(p.shards)]
			p.workers++
			wg.Go(func() {
				p.do(s, due)
				for {
					select {
					case due := <-tickets:
						p.do(s, due)
					case <-done:
						return
					}
				}
			})
			continue
		}
		select { // every worker is busy: wait for one
		case tickets <- due:
		case <-p.ctx.Done():
		}
	}
	close(done)
	wg.Wait()
}

// do runs one operation meant to start at t0 and records it.
func (p *phase) do(s *shard, t0 time.Time) {
	ctx := p.ctx
	var late int64
	if s.late != nil {
		late = min(max(int64(time.Since(t0)), 0), maxTrackable)
	}
	var err error
	if p.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.cfg.timeout)
		err = p.target.Do(ctx)
		cancel()
	} else {
		err = p.target.Do(ctx)
	}
	t1 := time.Now()
	if err != nil && p.ctx.Err() != nil { // cut short by the end of the run
		p.stopped.Store(true)
		p.aborted.Add(1)
		return
	}
	var class string
	if err != nil {
		class = p.cfg.classify(err)
	}
	lat := min(max(int64(t1.Sub(t0)), 0), maxTrackable)
	since := t1.Sub(p.start)
	b := int(since / p.cfg.bucketWidth)

	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.hist.RecordValue(lat) // within range: cannot fail
	if s.late != nil {
		_ = s.late.RecordValue(late)
	}
	s.count++
	if err != nil {
		s.errs[class]++
		if _, ok := s.samples[class]; !ok {
			s.samples[class] = clipMessage(err.Error())
		}
	}
	if b >= len(s.timeline) {
		s.timeline = append(s.timeline, make([]int64, b+1-len(s.timeline))...)
	}
	s.timeline[b]++
	if since > s.last {
		s.last = since
	}
}

func clipMessage(s string) string {
	const maxLen = 200
	if len(s) > maxLen {
		return s[:maxLen] + "…"
	}
	return s
}

// result merges the shards.
func (p *phase) result(end time.Time, cpu time.Duration, mallocs, bytes uint64) *Result {
	r := &Result{
		Name:         p.target.Name,
		Mode:         p.cfg.describe(),
		Rate:         p.cfg.rate,
		Workers:      p.workers,
		Histogram:    newHistogram(),
		Errors:       map[string]int64{},
		ErrorSamples: map[string]string{},
		Aborted:      p.aborted.Load(),
		BucketWidth:  p.cfg.bucketWidth,
	}
	var timeline []int64
	var last time.Duration
	for _, s := range p.shards {
		r.Histogram.Merge(s.hist)
		if s.late != nil {
			if r.Late == nil {
				r.Late = newHistogram()
			}
			r.Late.Merge(s.late)
		}
		r.Count += s.count
		for k, v := range s.errs {
			r.Errors[k] += v
			r.Failed += v
			if _, ok := r.ErrorSamples[k]; !ok {
				r.ErrorSamples[k] = s.samples[k]
			}
		}
		if len(s.timeline) > len(timeline) {
			timeline = append(timeline, make([]int64, len(s.timeline)-len(timeline))...)
		}
		for i, n := range s.timeline {
			timeline[i] += n
		}
		last = max(last, s.last)
	}
	r.Elapsed = last
	if r.Count == 0 {
		r.Elapsed = end.Sub(p.start)
	}
	for i, n := range timeline {
		r.Timeline = append(r.Timeline, Point{
			At:   time.Duration(i) * p.cfg.bucketWidth,
			Rate: float64(n) / p.cfg.bucketWidth.Seconds(),
		})
	}
	r.cpu, r.mallocs, r.bytes = cpu, mallocs, bytes
	r.fill()
	return r
}
