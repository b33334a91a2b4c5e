package saga_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
)

func TestSagaCompletesAndEachStepTakesEffectOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, nil, orderSaga(&hooks{}))
		a.publish(t, OrderPlaced{OrderID: "alice-1", Customer: "alice", Amount: 1200})
		a.waitStatus(t, "alice-1", saga.StatusCompleted)

		st, in, err := orderSaga(&hooks{}).Load(context.Background(), a.rt, "alice-1")
		require.NoError(t, err)
		require.Equal(t, OrderState{Customer: "alice", Amount: 1200, Reserved: true, Steps: 2}, *st)
		require.Equal(t, int64(2), in.Version)
		require.False(t, in.Stuck)
		require.Equal(t, []string{"on test.order_placed", "on test.payment_reserved"}, steps(t, a, "alice-1"))
		require.Eventually(t, func() bool { return len(effects(t, a.db, "alice-1")) == 2 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdConfirm}, effects(t, a.db, "alice-1"))
		require.Zero(t, count(t, a.db, "SELECT COUNT(*) FROM marty_saga_timer"), "completing removed the deadline")
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_started_total", map[string]string{"saga": "order"}))
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_completed_total", map[string]string{"saga": "order"}))
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_step_duration_seconds", map[string]string{"saga": "order", "step": "on test.payment_reserved"}))
	})
}

func TestSagaRedeliveredEventIsSkippedByTheInbox(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false"}, orderSaga(&hooks{}))
		env, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "silent-1", Customer: "silent"}, fxevents.DefaultCodec())
		require.NoError(t, err)
		for range 3 { // the same envelope delivered three times
			require.NoError(t, a.disp.Run(context.Background(), "saga.order", env))
		}
		in, err := a.rt.Get(context.Background(), "order", "silent-1")
		require.NoError(t, err)
		require.Equal(t, int64(1), in.Version, "one step for one event")
		require.Equal(t, int64(1), count(t, a.db, "SELECT COUNT(*) FROM marty_outbox WHERE type = ?", cmdReserve), "emitted once")
		require.Equal(t, int64(1), count(t, a.db, "SELECT COUNT(*) FROM marty_saga_timer"))
		require.Equal(t, int64(1), count(t, a.db, "SELECT COUNT(*) FROM marty_inbox WHERE consumer = 'saga.order'"))
	})
}

func TestSagaFailedStepRollsBackStateEmitsAndInboxMark(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		var calls atomic.Int32
		h := &hooks{beforePlaced: func(context.Context, string) error {
			if calls.Add(1) <= 2 {
				return errors.New("transient")
			}
			return nil
		}}
		a := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false"}, orderSaga(h))
		env, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "silent-2", Customer: "silent"}, fxevents.DefaultCodec())
		require.NoError(t, err)
		res := a.disp.HandleOne(context.Background(), "saga.order", env, 1)
		require.Error(t, res.Err)
		require.Equal(t, saga.Status(""), a.status(t, "silent-2"), "the saga created by the failed step was rolled back")
		require.Zero(t, count(t, a.db, "SELECT COUNT(*) FROM marty_outbox"))
		require.Zero(t, count(t, a.db, "SELECT COUNT(*) FROM marty_inbox"))
		require.NoError(t, a.disp.Run(context.Background(), "saga.order", env)) // retried until it succeeds
		require.Equal(t, saga.StatusRunning, a.status(t, "silent-2"))
		require.Equal(t, int64(1), count(t, a.db, "SELECT COUNT(*) FROM marty_outbox WHERE type = ?", cmdReserve))
		require.Equal(t, []string{"on test.order_placed"}, steps(t, a, "silent-2"))
	})
}

func TestSagaEventWithoutSagaIsIgnored(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false"}, orderSaga(&hooks{}))
		env, err := fxevents.NewEnvelope("payments", PaymentReserved{OrderID: "nobody-1"}, fxevents.DefaultCodec())
		require.NoError(t, err)
		require.NoError(t, a.disp.Run(context.Background(), "saga.order", env))
		require.Equal(t, saga.Status(""), a.status(t, "nobody-1"))
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_ignored_total", map[string]string{"saga": "order"}))
	})
}

func TestSagaDeclinedPaymentCompensatesInReverseOrderOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, nil, orderSaga(&hooks{}))
		a.publish(t, OrderPlaced{OrderID: "decline-1", Customer: "decline", Amount: 10})
		a.waitStatus(t, "decline-1", saga.StatusCompensated)
		require.Equal(t, []string{"on test.order_placed", "on test.payment_declined",
			"compensate release-payment", "compensate notify-customer"}, steps(t, a, "decline-1"))
		require.Eventually(t, func() bool { return len(effects(t, a.db, "decline-1")) == 4 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, a.db, "decline-1"))
		in, err := a.rt.Get(context.Background(), "order", "decline-1")
		require.NoError(t, err)
		require.Equal(t, "payment declined: card refused", in.LastError)
		require.Empty(t, in.Compensations)
		require.Zero(t, count(t, a.db, "SELECT COUNT(*) FROM marty_saga_timer"))
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_failed_total", map[string]string{"saga": "order"}))
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_compensated_total", map[string]string{"saga": "order"}))
	})
}

func TestSagaDeadlineFiresOnceAndCompensates(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, nil, orderSaga(&hooks{deadline: 100 * time.Millisecond}))
		a.publish(t, OrderPlaced{OrderID: "silent-3", Customer: "silent", Amount: 10})
		a.waitStatus(t, "silent-3", saga.StatusCompensated)
		require.Equal(t, []string{"on test.order_placed", "timer payment-deadline",
			"compensate release-payment", "compensate notify-customer"}, steps(t, a, "silent-3"))
		require.Eventually(t, func() bool { return len(effects(t, a.db, "silent-3")) == 4 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, a.db, "silent-3"))
	})
}

func TestSagaLateEventAfterCompletionIsIgnored(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, nil, orderSaga(&hooks{}))
		a.publish(t, OrderPlaced{OrderID: "bob-1", Customer: "bob"})
		a.waitStatus(t, "bob-1", saga.StatusCompleted)
		a.publish(t, &PaymentDeclined{OrderID: "bob-1", Reason: "late"})
		require.Eventually(t, func() bool {
			return metric(t, a.reg, "marty_saga_ignored_total", map[string]string{"saga": "order"}) == 1
		}, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, saga.StatusCompleted, a.status(t, "bob-1"))
		require.Len(t, steps(t, a, "bob-1"), 2)
	})
}
