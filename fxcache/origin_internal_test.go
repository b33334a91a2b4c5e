package fxcache

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
)

// A replica's own invalidation comes back to it through the bus (always
// with the memory bus): its handler skips it, since the writer dropped the
// keys at commit, and dropping them again would evict a value loaded since
// (example/orders' cache test loaded twice). Another replica's is applied.
func TestOwnInvalidationIsSkippedAndOthersAreApplied(t *testing.T) {
	t.Parallel()
	c, err := NewCache(DefaultConfig(), CacheOptions{Service: "svc"})
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, c.Close(context.Background())) })
	orders := Of[string](c, "orders", TypedOptions{})
	ctx := context.Background()
	orders.Set(ctx, "1", "loaded after the commit")
	full := c.fullKey("orders", "1")
	h := c.InvalidationHandler("test")
	deliver := func(ev Invalidated) {
		env, err := fxevents.NewEnvelope("svc", ev, fxevents.DefaultCodec())
		require.NoError(t, err)
		require.NoError(t, h.Handle(ctx, env))
	}

	deliver(Invalidated{Keys: []string{full}, Origin: c.origin})
	v, ok := orders.Get(ctx, "1")
	require.True(t, ok, "its own invalidation does not evict")
	require.Equal(t, "loaded after the commit", v)

	deliver(Invalidated{Keys: []string{full}, Origin: "another-replica"})
	_, ok = orders.Get(ctx, "1")
	require.False(t, ok, "another replica's invalidation evicts")
}
