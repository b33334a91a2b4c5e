package natsjs_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
)

type orderCancelled struct {
	OrderID string `json:"order_id"`
}

func (orderCancelled) EventType() string { return "orders.cancelled" }

type orderShipped struct {
	OrderID string `json:"order_id"`
}

func (orderShipped) EventType() string { return "orders.shipped" }

// twoTypes handles orders.placed and orders.cancelled in one handler.
type twoTypes struct {
	mu  sync.Mutex
	got []string
}

func (*twoTypes) Name() string         { return "audit" }
func (*twoTypes) EventTypes() []string { return []string{"orders.placed", "orders.cancelled"} }
func (h *twoTypes) Handle(_ context.Context, env fxevents.Envelope) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, env.Type)
	return nil
}

func (h *twoTypes) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := append([]string(nil), h.got...)
	sort.Strings(out)
	return out
}

// A handler of several event types gets exactly those, on servers with
// multi-subject filters (2.10+) and on older ones (one wildcard filter and
// the others acknowledged unhandled).
func TestHandlerOfSeveralTypesGetsExactlyThose(t *testing.T) {
	t.Parallel()
	forEachServer(t, func(t *testing.T, url string) {
		tg := newTarget(t, url)
		h := &twoTypes{}
		ta := newApp(t, "audit", tg.env(), fxevents.AsHandler(func() fxevents.Handler { return h }))
		ctx := context.Background()
		require.NoError(t, ta.bus.Publish(ctx,
			OrderPlaced{OrderID: "o1"}, orderShipped{OrderID: "o1"}, orderCancelled{OrderID: "o1"}))
		eventually(t, func() bool { return len(h.seen()) >= 2 }, "both handled types delivered")
		time.Sleep(300 * time.Millisecond)
		require.Equal(t, []string{"orders.cancelled", "orders.placed"}, h.seen(), "orders.shipped is not this handler's")
	})
}
