package load_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/martyfx/martyfx/fxtest/load"
)

// An open-loop run: 1000 operations per second for 100ms, so exactly 100
// operations, whatever the target's speed; every third one fails.
func ExampleRun() {
	var n atomic.Int64
	op := load.Func("op", func(context.Context) error {
		if n.Add(1)%3 == 0 {
			return errors.New("no")
		}
		return nil
	})
	res, err := load.Run(context.Background(), op, load.Rate(1000), load.For(100*time.Millisecond))
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Count, res.Errors)
	// Output: 100 map[error:33]
}

// Two targets side by side, 5 rounds of 100 operations each.
func ExampleCompare() {
	noop := load.Func("noop", func(context.Context) error { return nil })
	sleep := load.Func("sleep", func(context.Context) error { time.Sleep(time.Millisecond); return nil })
	c, err := load.Compare(context.Background(), []load.Target{noop, sleep}, load.Count(100), load.Rounds(5), load.Workers(4))
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Results[0].Count, c.Results[1].Count, c.Ratios[1].Throughput < 1)
	// Output: 500 500 true
}
