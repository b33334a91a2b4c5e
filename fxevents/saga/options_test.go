package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxmonitor"
	"github.com/martyfx/martyfx/fxrepo"
)

func TestSagaStepSpansFollowTheEventAndTimersLinkToTheirStep(t *testing.T) {
	t.Parallel()
	a := newApp(t, sqliteBackend(t), nil, orderSaga(&hooks{deadline: 50 * time.Millisecond}))
	ctx, parent := a.tp.Tracer("test").Start(context.Background(), "POST /orders")
	require.NoError(t, a.uow.Do(ctx, func(ctx context.Context) error {
		return a.bus.Publish(ctx, OrderPlaced{OrderID: "silent-9", Customer: "silent"})
	}))
	parent.End()
	a.waitStatus(t, "silent-9", saga.StatusCompensated)
	byName := func(name string) trace.ReadOnlySpan {
		for _, s := range a.spans.Ended() {
			if s.Name() == name {
				return s
			}
		}
		return nil
	}
	require.Eventually(t, func() bool { return byName("saga order timer payment-deadline") != nil }, 5*time.Second, 5*time.Millisecond)
	step := byName("saga order on test.order_placed")
	require.NotNil(t, step)
	require.Equal(t, parent.SpanContext().TraceID(), step.SpanContext().TraceID(), "the step continues the request's trace")
	timer := byName("saga order timer payment-deadline")
	require.Len(t, timer.Links(), 1)
	require.Equal(t, step.SpanContext().SpanID(), timer.Links()[0].SpanContext.SpanID(), "the timer links to the step that set it")
}

func TestSagaConfigAndDefinitionErrors(t *testing.T) {
	t.Parallel()
	// A lean app: nothing opens the database before the saga's runtime
	// is built (a failed fx.New has no stop hook to close it).
	build := func(env []string, def saga.Saga) error {
		src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_SERVICE_NAME=orders", "MARTY_DB_DSN=file:" + t.TempDir() + "/x.db"}, env...))
		require.NoError(t, err)
		opts := []fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module, fxrepo.Module, saga.Module, fx.Replace(src)}
		if def != nil {
			opts = append(opts, saga.AsSaga(def))
		}
		return fx.New(opts...).Err()
	}
	require.ErrorContains(t, build([]string{"MARTY_SAGA_WORKERS=0"}, nil), "MARTY_SAGA_WORKERS")
	require.ErrorContains(t, build([]string{"MARTY_SAGA_BACKOFF_MAX=1ms"}, nil), "MARTY_SAGA_BACKOFF_MAX")

	noStart := saga.New[OrderState]("order")
	saga.On(noStart, orderID, func(*saga.Step[OrderState], OrderPlaced) error { return nil })
	require.ErrorContains(t, build(nil, noStart), "no step starts it")

	dup := saga.New[OrderState]("order")
	saga.Start(dup, orderID, func(*saga.Step[OrderState], OrderPlaced) error { return nil })
	saga.On(dup, orderID, func(*saga.Step[OrderState], OrderPlaced) error { return nil })
	dup.Compensation("undo", func(*saga.Step[OrderState]) error { return nil })
	dup.Compensation("undo", func(*saga.Step[OrderState]) error { return nil })
	err := build(nil, dup)
	require.ErrorContains(t, err, "two steps on event type test.order_placed")
	require.ErrorContains(t, err, `compensation "undo" registered twice`)

	bad := saga.New[OrderState]("Bad Name")
	saga.Start(bad, orderID, func(*saga.Step[OrderState], OrderPlaced) error { return nil })
	require.ErrorContains(t, build(nil, bad), "must match")

	// Steps that name an unknown timer or compensation fail.
	unknown := saga.New[OrderState]("order")
	saga.Start(unknown, orderID, func(s *saga.Step[OrderState], _ OrderPlaced) error {
		require.ErrorContains(t, s.Schedule("nope", time.Second), `no timer "nope"`)
		require.ErrorContains(t, s.AddCompensation("nope"), `no compensation "nope"`)
		return nil
	})
	a := newApp(t, sqliteBackend(t), nil, unknown)
	a.publish(t, OrderPlaced{OrderID: "u-1"})
	a.waitStatus(t, "u-1", saga.StatusRunning)
}

func TestSagaNeedsTheOutbox(t *testing.T) {
	t.Parallel()
	a := &app{}
	app := fx.New(appOptions(t, a, []string{"MARTY_EVENTS_BUS=memory", "MARTY_DB_DSN=file:" + t.TempDir() + "/x.db"}, orderSaga(&hooks{}))...)
	require.NoError(t, app.Err())
	err := app.Start(context.Background())
	require.ErrorContains(t, err, "MARTY_EVENTS_BUS=outbox")
	_ = app.Stop(context.Background())
}

func TestSagaModuleWithoutSagasDoesNothing(t *testing.T) {
	t.Parallel()
	a := newApp(t, sqliteBackend(t), []string{"MARTY_EVENTS_BUS=memory"}, nil)
	rows := panelRows(t, a)
	require.Empty(t, rows)
	list, err := a.rt.List(context.Background(), saga.Filter{})
	require.NoError(t, err)
	require.Empty(t, list)
}

func TestSagaEndedSagasArePurgedAfterTheRetention(t *testing.T) {
	t.Parallel()
	a := newApp(t, sqliteBackend(t), []string{"MARTY_SAGA_RETENTION=1ms"}, orderSaga(&hooks{}))
	a.publish(t, OrderPlaced{OrderID: "ok-7", Customer: "ok"}, OrderPlaced{OrderID: "silent-7", Customer: "silent"})
	require.Eventually(t, func() bool { return metric(t, a.reg, "marty_saga_purged_total", nil) == 1 }, 20*time.Second, 10*time.Millisecond)
	require.Equal(t, saga.Status(""), a.status(t, "ok-7"), "the completed saga is gone")
	require.Empty(t, steps(t, a, "ok-7"), "with its history")
	require.Equal(t, saga.StatusRunning, a.status(t, "silent-7"), "an open saga is kept")
}

func TestSagaModuleRegistersTheStuckAlert(t *testing.T) {
	t.Parallel()
	var rules []fxmonitor.AlertRule
	a := newApp(t, sqliteBackend(t), nil, nil, fx.Invoke(fx.Annotate(func(r []fxmonitor.AlertRule) { rules = r },
		fx.ParamTags(`group:"martyfx.monitor.alert_rules"`))))
	_ = a
	var found bool
	for _, r := range rules {
		if r.Name == "MartySagaStuck" {
			found = true
			require.Equal(t, "marty_saga_stuck_sagas", r.Metric)
		}
	}
	require.True(t, found, "rules: %v", rules)
}
