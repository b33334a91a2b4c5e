package fxcache_test

import (
	"context"
	"fmt"

	"github.com/martyfx/martyfx/fxcache"
)

// A typed view of an in-process cache (no MARTY_CACHE_URL): the second
// read is a hit, and a not-found is remembered.
func Example() {
	c, err := fxcache.NewCache(fxcache.DefaultConfig(), fxcache.CacheOptions{Service: "orders"})
	if err != nil {
		panic(err)
	}
	defer func() { _ = c.Close(context.Background()) }()

	type Order struct{ ID, Status string }
	orders := fxcache.Of[Order](c, "orders", fxcache.TypedOptions{})
	loads := 0
	load := func(id string) func(ctx context.Context) (Order, error) {
		return func(ctx context.Context) (Order, error) {
			loads++
			if id == "404" {
				return Order{}, fxcache.ErrNotFound
			}
			return Order{ID: id, Status: "pending"}, nil // e.g. repo.Get(ctx, id)
		}
	}
	ctx := context.Background()
	for range 2 {
		o, _ := orders.GetOrLoad(ctx, "42", load("42"))
		fmt.Println(o.ID, o.Status)
	}
	for range 2 {
		_, err := orders.GetOrLoad(ctx, "404", load("404"))
		fmt.Println(err)
	}
	fmt.Println("loads:", loads)
	// Output:
	// 42 pending
	// 42 pending
	// fxcache: not found
	// fxcache: orders "404" not found (remembered)
	// loads: 2
}
