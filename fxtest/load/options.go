package load

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Option configures Run, Test, Compare and TestCompare.
type Option func(*config)

type config struct {
	rate        float64       // open loop when > 0
	workers     int           // closed loop: workers; open loop: most operations in flight
	workersSet  bool          // Workers was given
	duration    time.Duration // bound by time (0: none)
	count       int64         // bound by count (0: none)
	warmup      time.Duration
	warmupOps   int64
	timeout     time.Duration // per operation (0: none)
	classify    func(error) string
	rounds      int
	seed        uint64
	seedSet     bool
	bucketWidth time.Duration // of Result.Timeline; 0: from the bound
}

// DefaultMaxInFlight is the most operations an open-loop run keeps in
// flight unless Workers says otherwise: when the target is so slow that this
// many are waiting, the next ones start late (and their latency, measured
// from their intended start, says so).
const DefaultMaxInFlight = 1000

// Rate makes the run open-loop: operations start at a constant rate (per
// second) whatever the target's latency, and each one's latency is measured
// from the time it was meant to start, so a slow target cannot hide its
// queueing delay (no coordinated omission). Without Rate the run is
// closed-loop (see Workers).
func Rate(perSecond float64) Option { return func(c *config) { c.rate = perSecond } }

// Workers sets the number of workers of a closed-loop run (default 1): each
// one starts an operation as soon as its previous one returns. In an
// open-loop run (Rate) it caps the operations in flight (default
// DefaultMaxInFlight).
func Workers(n int) Option { return func(c *config) { c.workers, c.workersSet = n, true } }

// For bounds the run by time: a closed-loop run starts no operation after d;
// an open-loop run starts the operations scheduled within d (exactly
// d × rate of them, however slow the target). Operations in flight at the
// end are waited for and counted.
func For(d time.Duration) Option { return func(c *config) { c.duration = d } }

// Count bounds the run by the number of operations measured (warm-up
// excluded). With For too, the first bound reached ends the run.
func Count(n int) Option { return func(c *config) { c.count = int64(n) } }

// Warmup runs the target for d before the measured run, with the same
// mode, rate and workers, and discards what it measured.
func Warmup(d time.Duration) Option { return func(c *config) { c.warmup = d } }

// WarmupOps runs n operations before the measured run and discards them.
func WarmupOps(n int) Option { return func(c *config) { c.warmupOps = int64(n) } }

// Timeout bounds each operation: its context ends after d.
func Timeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// Classify names the class a failed operation is counted under in
// Result.Errors, instead of ErrorClass.
func Classify(fn func(error) string) Option { return func(c *config) { c.classify = fn } }

// Rounds sets how many rounds Compare runs (default 10); the bounds (For,
// Count) apply to each target in each round.
func Rounds(n int) Option { return func(c *config) { c.rounds = n } }

// Seed fixes the random order of the targets in Compare's rounds (by
// default it is drawn at random and reported in Comparison.Seed).
func Seed(s uint64) Option { return func(c *config) { c.seed, c.seedSet = s, true } }

// TimelineBucket sets the width of Result.Timeline's buckets (default: a
// hundredth of For's duration, between 10ms and 10s; 100ms when the run is
// bounded by Count only).
func TimelineBucket(d time.Duration) Option { return func(c *config) { c.bucketWidth = d } }

func newConfig(opts []Option) (config, error) {
	c := config{rounds: 10}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	var errs []error
	if c.rate < 0 || math.IsNaN(c.rate) || math.IsInf(c.rate, 0) {
		errs = append(errs, fmt.Errorf("load.Rate(%v): want a positive number of operations per second, or no Rate for a closed loop", c.rate))
	}
	if c.workersSet && c.workers <= 0 {
		errs = append(errs, fmt.Errorf("load.Workers(%d): want at least 1", c.workers))
	}
	if c.duration < 0 {
		errs = append(errs, fmt.Errorf("load.For(%v): want a positive duration", c.duration))
	}
	if c.count < 0 {
		errs = append(errs, fmt.Errorf("load.Count(%d): want a positive count", c.count))
	}
	if c.duration == 0 && c.count == 0 {
		errs = append(errs, errors.New("no bound: give load.For(duration), load.Count(n) or both"))
	}
	if c.warmup < 0 || c.warmupOps < 0 {
		errs = append(errs, fmt.Errorf("load.Warmup(%v)/WarmupOps(%d): want positive values", c.warmup, c.warmupOps))
	}
	if c.timeout < 0 {
		errs = append(errs, fmt.Errorf("load.Timeout(%v): want a positive duration", c.timeout))
	}
	if c.rounds <= 0 {
		errs = append(errs, fmt.Errorf("load.Rounds(%d): want at least 1", c.rounds))
	}
	if c.bucketWidth < 0 {
		errs = append(errs, fmt.Errorf("load.TimelineBucket(%v): want a positive duration", c.bucketWidth))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("load: %w", errors.Join(errs...))
	}
	if !c.workersSet {
		c.workers = 1
		if c.rate > 0 {
			c.workers = DefaultMaxInFlight
		}
	}
	if c.classify == nil {
		c.classify = ErrorClass
	}
	if c.bucketWidth == 0 {
		c.bucketWidth = 100 * time.Millisecond
		if c.duration > 0 {
			c.bucketWidth = min(max(c.duration/100, 10*time.Millisecond), 10*time.Second)
		}
	}
	return c, nil
}

// describe says how the run was driven, for the report.
func (c config) describe() string {
	var s string
	if c.rate > 0 {
		s = fmt.Sprintf("open loop at %s/s (at most %d in flight)", fmtNum(c.rate), c.workers)
	} else {
		s = fmt.Sprintf("closed loop, %d worker%s", c.workers, plural(c.workers))
	}
	switch {
	case c.duration > 0 && c.count > 0:
		s += fmt.Sprintf(", %d ops or %v", c.count, c.duration)
	case c.duration > 0:
		s += fmt.Sprintf(", for %v", c.duration)
	default:
		s += fmt.Sprintf(", %d ops", c.count)
	}
	if c.warmup > 0 {
		s += fmt.Sprintf(", warm-up %v", c.warmup)
	}
	if c.warmupOps > 0 {
		s += fmt.Sprintf(", warm-up %d ops", c.warmupOps)
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
