package breaker_test

import (
	"errors"
	"fmt"

	"github.com/martyfx/martyfx/fxmonitor/breaker"
)

// After two failures the breaker opens, and calls fail fast without being made.
func ExampleNew() {
	bs, err := breaker.New(breaker.Config{
		Named: map[string]breaker.Settings{"payments": {ConsecutiveFailures: 2}},
	}, breaker.Options{})
	if err != nil {
		panic(err)
	}
	br := bs.Get("payments")
	for range 2 {
		_ = br.Execute(func() error { return errors.New("502 Bad Gateway") })
	}
	err = br.Execute(func() error { panic("not called") })
	fmt.Println(br.State(), errors.Is(err, breaker.ErrOpen))
	// Output: open true
}
