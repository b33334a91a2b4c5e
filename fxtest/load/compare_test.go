package load_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxtest/load"
)

// Compare interleaves the targets in a new random order each round and
// reports each one's median ratios to the first. On the fake clock the
// targets take exactly 1, 2 and 4ms, so the ratios are exact.
func TestCompareInterleavesAndReportsMedianRatios(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var calls []int // which target each operation ran
		target := func(i int, d time.Duration) load.Target {
			return load.Func(d.String(), func(context.Context) error {
				mu.Lock()
				calls = append(calls, i)
				mu.Unlock()
				time.Sleep(d)
				return nil
			})
		}
		targets := []load.Target{target(0, time.Millisecond), target(1, 2*time.Millisecond), target(2, 4*time.Millisecond)}
		c, err := load.Compare(t.Context(), targets, load.Count(50), load.Rounds(6), load.Seed(7), load.WarmupOps(5))
		require.NoError(t, err)
		require.Equal(t, uint64(7), c.Seed)

		// Warm-up first, in order, then each round runs every target once,
		// 50 operations at a time, in the order reported.
		want := slices.Concat(slices.Repeat([]int{0}, 5), slices.Repeat([]int{1}, 5), slices.Repeat([]int{2}, 5))
		require.Len(t, c.Order, 6)
		orders := map[string]bool{}
		for _, order := range c.Order {
			require.ElementsMatch(t, []int{0, 1, 2}, order)
			orders[fmtInts(order)] = true
			for _, i := range order {
				want = append(want, slices.Repeat([]int{i}, 50)...)
			}
		}
		require.Equal(t, want, calls)
		require.Greater(t, len(orders), 1, "the order changes between rounds: %v", c.Order)

		for i, r := range c.Results {
			require.Equal(t, int64(300), r.Count, r.Name)
			require.Len(t, c.Rounds[i], 6)
		}
		require.InDelta(t, 1, c.Ratios[0].Throughput, 1e-9)
		require.InDelta(t, 0.5, c.Ratios[1].Throughput, 1e-9)
		require.InDelta(t, 0.25, c.Ratios[2].Throughput, 1e-9)
		require.InEpsilon(t, 2, c.Ratios[1].P99, 0.002)
		require.InEpsilon(t, 4, c.Ratios[2].P99, 0.002)
		q, ok := c.Ratio("4ms")
		require.True(t, ok)
		require.Equal(t, c.Ratios[2], q)
		require.Equal(t, c.Results[1], c.Result("2ms"))
		require.Nil(t, c.Result("nope"))
		require.InEpsilon(t, float64(2*time.Millisecond), float64(c.Result("2ms").P99), 0.002)

		out := c.String()
		require.Contains(t, out, "6 rounds in random order (seed 7)")
		require.Contains(t, out, "x first")
		require.Contains(t, out, "0.25")

		// The same seed, the same order.
		again, err := load.Compare(t.Context(), targets, load.Count(1), load.Rounds(6), load.Seed(7))
		require.NoError(t, err)
		require.Equal(t, c.Order, again.Order)
	})
}

func fmtInts(xs []int) string {
	b := make([]byte, 0, len(xs))
	for _, x := range xs {
		b = append(b, byte('0'+x))
	}
	return string(b)
}

func TestCompareChecksItsTargets(t *testing.T) {
	t.Parallel()
	op := load.Func("a", func(context.Context) error { return nil })
	_, err := load.Compare(t.Context(), []load.Target{op}, load.Count(1))
	require.EqualError(t, err, "load: Compare needs two or more targets, got 1")
	_, err = load.Compare(t.Context(), []load.Target{op, op}, load.Count(1))
	require.EqualError(t, err, `load: two targets are named "a": give each its own name`)
	_, err = load.Compare(t.Context(), []load.Target{op, {Name: "b"}}, load.Count(1))
	require.EqualError(t, err, `load: target "b" has no Do function`)
	_, err = load.Compare(t.Context(), []load.Target{op, op})
	require.ErrorContains(t, err, "no bound")
}

// A cancelled comparison returns the rounds it finished with the error.
func TestCompareStopsWithItsContext(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 245*time.Millisecond)
		defer cancel()
		op := func(name string) load.Target {
			return load.Func(name, func(ctx context.Context) error { return sleepOrCancel(ctx, 10*time.Millisecond) })
		}
		// Each round: 2 targets × 5 operations × 10ms = 100ms.
		c, err := load.Compare(ctx, []load.Target{op("a"), op("b")}, load.Count(5), load.Rounds(10), load.Seed(1))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Contains(t, err.Error(), "load: compare: stopped in round 3")
		require.Len(t, c.Order, 3)
		require.Equal(t, int64(24), c.Results[0].Count+c.Results[1].Count, "2 rounds and 4 operations of the third")
	})
}
