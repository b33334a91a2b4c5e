package fxtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtest"
)

type shipRequested struct {
	ID string `json:"id"`
}

func (shipRequested) EventType() string     { return "fxtest.ship_requested" }
func (e shipRequested) AggregateID() string { return e.ID }

type shipped struct {
	ID string `json:"id"`
}

func (shipped) EventType() string     { return "fxtest.shipped" }
func (e shipped) AggregateID() string { return e.ID }

// The harness records events through a bus that wraps the app's: a saga
// (which needs the outbox) still finds the outbox under it, runs, and what
// its steps emit is recorded like any event.
func TestSagaUnderTheRecorder(t *testing.T) {
	t.Parallel()
	def := saga.New[struct{}]("ship")
	saga.Start(def, func(e shipRequested) string { return e.ID },
		func(s *saga.Step[struct{}], e shipRequested) error {
			s.Complete()
			return s.Emit(shipped(e))
		})
	var (
		rt  *saga.Runtime
		bus fxevents.Bus
		uow fxrepo.UnitOfWork
	)
	app := fxtest.New(t, saga.Module, saga.AsSaga(def), fxtest.Env("MARTY_EVENTS_BUS=outbox"), fx.Populate(&rt, &bus, &uow))
	require.NoError(t, uow.Do(t.Context(), func(ctx context.Context) error { return bus.Publish(ctx, shipRequested{ID: "s-1"}) }))
	require.Eventually(t, func() bool {
		in, err := rt.Get(context.Background(), "ship", "s-1")
		return err == nil && in.Status == saga.StatusCompleted
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, []shipped{{ID: "s-1"}}, fxtest.RequirePublished[shipped](app))
}
