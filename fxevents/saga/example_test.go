package saga_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxrepo"
)

// ShipmentRequested starts the example saga.
type ShipmentRequested struct {
	OrderID string `json:"order_id"`
}

func (ShipmentRequested) EventType() string     { return "example.shipment_requested" }
func (e ShipmentRequested) AggregateID() string { return e.OrderID }

// Shipped ends it.
type Shipped struct {
	OrderID string `json:"order_id"`
}

func (Shipped) EventType() string     { return "example.shipped" }
func (e Shipped) AggregateID() string { return e.OrderID }

// Shipping is the example saga's state.
type Shipping struct {
	Requested bool `json:"requested"`
	Shipped   bool `json:"shipped"`
}

// A two-step saga on SQLite: a shipment request starts it with a
// deadline, the shipment completes it.
func Example() {
	dir, _ := os.MkdirTemp("", "saga-example")
	defer func() { _ = os.RemoveAll(dir) }()

	shipping := saga.New[Shipping]("shipping")
	saga.Start(shipping, func(e ShipmentRequested) string { return e.OrderID },
		func(s *saga.Step[Shipping], e ShipmentRequested) error {
			s.State.Requested = true
			return s.Schedule("give-up", 24*time.Hour)
		})
	saga.On(shipping, func(e Shipped) string { return e.OrderID },
		func(s *saga.Step[Shipping], e Shipped) error {
			s.State.Shipped = true
			s.Complete()
			return nil
		})
	shipping.OnTimer("give-up", func(s *saga.Step[Shipping]) error {
		s.Fail("not shipped within a day")
		return nil
	})

	src, _ := fxcore.NewSourceFrom("", []string{
		"MARTY_SERVICE_NAME=shop", "MARTY_LOG_LEVEL=error", "MARTY_EVENTS_BUS=outbox",
		"MARTY_DB_DSN=file:" + filepath.Join(dir, "shop.db"),
	})
	var (
		bus fxevents.Bus
		uow fxrepo.UnitOfWork
		rt  *saga.Runtime
	)
	app := fx.New(fx.NopLogger, fxcore.Module, fxrepo.Module, fxevents.Module, saga.Module, fx.Replace(src),
		saga.AsSaga(shipping), fx.Populate(&bus, &uow, &rt))
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = app.Stop(ctx) }()

	_ = uow.Do(ctx, func(ctx context.Context) error {
		return bus.Publish(ctx, ShipmentRequested{OrderID: "o-1"}, Shipped{OrderID: "o-1"})
	})
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if in, err := rt.Get(ctx, "shipping", "o-1"); err == nil && in.Status == saga.StatusCompleted {
			break
		}
	}
	state, in, _ := shipping.Load(ctx, rt, "o-1")
	fmt.Printf("%s after %d steps: %+v\n", in.Status, in.Version, *state)
	history, _ := rt.History(ctx, "shipping", "o-1")
	for _, h := range history {
		fmt.Println(h.Step, "->", h.Status)
	}
	// Output:
	// completed after 2 steps: {Requested:true Shipped:true}
	// on example.shipment_requested -> running
	// on example.shipped -> completed
}
