package load

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Comparison is what Compare measured: each target's figures over all
// rounds and its ratios to the first target.
type Comparison struct {
	// Results are the targets' figures over all rounds, in the order given.
	Results []*Result
	// Ratios are each target's ratios to the first (the first's are 1).
	Ratios []Ratio
	// Rounds are each target's figures in each round: Rounds[target][round].
	Rounds [][]Round
	// Order is the order the targets ran in each round: Order[round].
	Order [][]int
	// Seed is the seed of the random order (see the Seed option).
	Seed uint64
}

// Ratio is a target's figures relative to the first target's: each is the
// median over rounds of the ratio of the two in the same round, so that a
// burst of load from elsewhere, which lands on one round, moves the median
// little.
type Ratio struct {
	// Throughput is ops/s ÷ the first's: above 1 is faster. In an
	// open-loop comparison both run at the rate; compare P99 and CPU.
	Throughput float64
	// CPU is the first's CPU per operation ÷ this one's: above 1 is
	// cheaper, the throughput ratio the targets reach when CPU-bound.
	CPU float64
	// P99 is p99 latency ÷ the first's: below 1 is quicker.
	P99 float64
}

// Round is one target's figures in one round.
type Round struct {
	Throughput float64
	CPUPerOp   time.Duration
	P99        time.Duration
}

// Compare runs two or more targets side by side: after each one's warm-up
// (Warmup, WarmupOps), it runs Rounds rounds (default 10); in each round
// every target runs once, bounded by For and Count, in a new random order.
// Interleaving short rounds spreads the noise of a shared machine over
// every target instead of landing on one, and each target's ratios to the
// first (Comparison.Ratios) are medians over rounds of same-round ratios.
// When ctx ends it returns the rounds done so far with an error.
func Compare(ctx context.Context, targets []Target, opts ...Option) (*Comparison, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if len(targets) < 2 {
		return nil, fmt.Errorf("load: Compare needs two or more targets, got %d", len(targets))
	}
	seen := map[string]bool{}
	for i := range targets {
		t := &targets[i]
		if t.Do == nil {
			return nil, fmt.Errorf("load: target %q has no Do function", t.Name)
		}
		if t.Name == "" {
			t.Name = fmt.Sprintf("target %d", i+1)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("load: two targets are named %q: give each its own name", t.Name)
		}
		seen[t.Name] = true
	}
	if !cfg.seedSet {
		var b [8]byte
		_, _ = rand.Read(b[:])
		cfg.seed = binary.LittleEndian.Uint64(b[:])
	}
	c := &Comparison{Seed: cfg.seed, Rounds: make([][]Round, len(targets))}
	mode := fmt.Sprintf("%s; %d rounds in random order (seed %d)", cfg.describe(), cfg.rounds, cfg.seed)
	for i, t := range targets {
		c.Results = append(c.Results, &Result{
			Name: t.Name, Mode: mode, Rate: cfg.rate, Histogram: newHistogram(),
			Errors: map[string]int64{}, ErrorSamples: map[string]string{}, BucketWidth: cfg.bucketWidth,
		})
		if err := warmUp(ctx, targets[i], cfg); err != nil {
			return c, err
		}
	}
	rng := mrand.New(mrand.NewPCG(cfg.seed, 0x6d61727479)) // "marty"
	var stopErr error
	for range cfg.rounds {
		order := rng.Perm(len(targets))
		c.Order = append(c.Order, order)
		for _, i := range order {
			r := runPhase(ctx, targets[i], cfg)
			c.Results[i].add(r)
			c.Rounds[i] = append(c.Rounds[i], Round{Throughput: r.Throughput, CPUPerOp: r.CPUPerOp, P99: r.P99})
			if ctx.Err() != nil {
				stopErr = fmt.Errorf("load: compare: stopped in round %d: %w", len(c.Order), context.Cause(ctx))
				break
			}
		}
		if stopErr != nil {
			break
		}
	}
	for _, r := range c.Results {
		r.fill()
	}
	c.Ratios = ratios(c.Rounds)
	return c, stopErr
}

// add merges a round's result into r (fill must be called after).
func (r *Result) add(o *Result) {
	r.Histogram.Merge(o.Histogram)
	if o.Late != nil {
		if r.Late == nil {
			r.Late = newHistogram()
		}
		r.Late.Merge(o.Late)
	}
	r.Count += o.Count
	r.Failed += o.Failed
	r.Aborted += o.Aborted
	for k, v := range o.Errors {
		r.Errors[k] += v
		if _, ok := r.ErrorSamples[k]; !ok {
			r.ErrorSamples[k] = o.ErrorSamples[k]
		}
	}
	r.Elapsed += o.Elapsed
	r.Workers = max(r.Workers, o.Workers)
	r.cpu += o.cpu
	r.mallocs += o.mallocs
	r.bytes += o.bytes
}

// ratios are the medians over the rounds both ran of each target's
// same-round ratios to the first.
func ratios(rounds [][]Round) []Ratio {
	out := make([]Ratio, len(rounds))
	for i := range rounds {
		var th, cpu, p99 []float64
		for k := 0; k < len(rounds[i]) && k < len(rounds[0]); k++ {
			a, b := rounds[0][k], rounds[i][k]
			if a.Throughput > 0 {
				th = append(th, b.Throughput/a.Throughput)
			}
			if b.CPUPerOp > 0 {
				cpu = append(cpu, float64(a.CPUPerOp)/float64(b.CPUPerOp))
			}
			if a.P99 > 0 {
				p99 = append(p99, float64(b.P99)/float64(a.P99))
			}
		}
		out[i] = Ratio{Throughput: median(th), CPU: median(cpu), P99: median(p99)}
	}
	return out
}

// median of xs (NaN when empty).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// Result returns the figures of the target named name (nil if none).
func (c *Comparison) Result(name string) *Result {
	if i := c.index(name); i >= 0 {
		return c.Results[i]
	}
	return nil
}

// Ratio returns the ratios of the target named name to the first.
func (c *Comparison) Ratio(name string) (Ratio, bool) {
	if i := c.index(name); i >= 0 && i < len(c.Ratios) {
		return c.Ratios[i], true
	}
	return Ratio{}, false
}

func (c *Comparison) index(name string) int {
	return slices.IndexFunc(c.Results, func(r *Result) bool { return r.Name == name })
}

func (c *Comparison) names() string {
	var names []string
	for _, r := range c.Results {
		names = append(names, fmt.Sprintf("%q", r.Name))
	}
	return strings.Join(names, ", ")
}

// String is the report: the table of every target's figures with its
// ratios to the first.
func (c *Comparison) String() string { return table(c.Results, c.Ratios) }
