package fxevents_test

import (
	"context"
	"fmt"

	"github.com/martyfx/martyfx/fxevents"
)

// Greeted is the example's event.
type Greeted struct {
	Name string `json:"name"`
}

func (Greeted) EventType() string { return "example.greeted" }

// ExampleNewDispatcher runs the event bus without Fx: a dispatcher with one
// handler under the memory bus. Config.Sync runs the handler inside
// Publish, which keeps the output deterministic.
func ExampleNewDispatcher() {
	cfg := fxevents.DefaultConfig()
	cfg.Sync = true
	d, err := fxevents.NewDispatcher(cfg, fxevents.DispatcherOptions{
		Handlers: []fxevents.Handler{
			fxevents.HandlerFunc("greeter", func(_ context.Context, e Greeted) error {
				fmt.Println("hello", e.Name)
				return nil
			}),
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	bus, err := fxevents.NewMemoryBus(fxevents.MemoryBusOptions{Dispatcher: d})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	_ = bus.Start(ctx)
	defer func() { _ = bus.Stop(ctx) }()
	if err := bus.Publish(ctx, Greeted{Name: "Ada"}); err != nil {
		fmt.Println(err)
	}
	// Output: hello Ada
}
