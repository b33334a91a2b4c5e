package fxrepo_test

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
)

// Order is the example's entity.
type Order struct {
	ID       int64  `gorm:"primaryKey"`
	Customer string `gorm:"not null"`
	Version  int64  // optimistic locking
}

// Without Fx: build, start, use and stop the database.
func ExampleNewDatabase() {
	cfg := fxrepo.DefaultConfig()
	cfg.DSN = ":memory:"
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{Models: []any{&Order{}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := d.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = d.Stop(ctx) }()

	orders := fxrepo.NewRepository[Order, int64](d.DB())
	uow := fxrepo.NewUnitOfWork(d.DB())
	o := &Order{Customer: "alice"}
	err = uow.Do(ctx, func(ctx context.Context) error { return orders.Create(ctx, o) })
	fmt.Println(o.ID, o.Version, err)
	_, err = orders.Get(ctx, 42)
	fmt.Println(err, errors.Is(err, fxrepo.ErrNotFound))
	// Output:
	// 1 1 <nil>
	// fxrepo: get Order 42: not found true
}

// With Fx: a model and a repository; the Module opens, migrates and closes
// the database.
func ExampleAsModel() {
	src, _ := fxcore.NewSourceFrom("", []string{"MARTY_DB_DSN=:memory:", "MARTY_LOG_LEVEL=error"})
	var orders *fxrepo.Repository[Order, int64]
	app := fx.New(
		fxcore.Module, fxrepo.Module, fx.NopLogger, fx.Replace(src),
		fxrepo.AsModel(&Order{}),
		fx.Provide(fxrepo.NewRepository[Order, int64]),
		fx.Populate(&orders),
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = app.Stop(ctx) }()
	_ = orders.Create(ctx, &Order{Customer: "bob"})
	n, err := orders.Count(ctx)
	fmt.Println(n, err)
	// Output: 1 <nil>
}
