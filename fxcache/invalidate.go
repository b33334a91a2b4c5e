package fxcache

import (
	"context"
	"strings"

	"github.com/martyfx/martyfx/fxevents"
)

// Invalidated tells the other replicas to forget keys (full keys, with the
// prefix). The cache publishes it on the bus after a Delete (or a
// repository Update/Delete) has committed; each replica's handler drops
// the keys from its in-process tier (Redis was already cleared by the
// writer).
type Invalidated struct {
	Keys []string `json:"keys"`
	// Origin is the publishing Cache's id: its own handler skips the event,
	// since the writer already dropped the keys when the change committed
	// (dropping them again would also evict a value loaded since).
	Origin string `json:"origin,omitempty"`
}

// EventType is "martyfx.cache.invalidated".
func (Invalidated) EventType() string { return "martyfx.cache.invalidated" }

// InvalidationHandler is the handler of Invalidated events for this
// replica: name must be unique per replica (the Module uses
// "fxcache.invalidate.<instance id>"), so that with a broker transport
// (natsjs, ...) every replica gets every event rather than sharing them.
// Keys under another prefix (another service) are ignored.
func (c *Cache) InvalidationHandler(name string) fxevents.Handler {
	prefix := c.prefix + ":"
	return fxevents.HandlerFunc(name, func(_ context.Context, ev Invalidated) error {
		if ev.Origin != "" && ev.Origin == c.origin {
			return nil
		}
		for _, k := range ev.Keys {
			if strings.HasPrefix(k, prefix) {
				c.dropLocal(k)
			}
		}
		return nil
	})
}
