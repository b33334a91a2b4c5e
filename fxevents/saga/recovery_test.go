package saga_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
)

func TestSagaFailingCompensationIsRetriedThenStuckAndTheAdminRetryCompletesIt(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		h := &hooks{releaseFailures: 1000}
		a := newApp(t, b, []string{"MARTY_SAGA_MAX_ATTEMPTS=3"}, orderSaga(h))
		a.publish(t, OrderPlaced{OrderID: "decline-2", Customer: "decline"})
		require.Eventually(t, func() bool {
			in, err := a.rt.Get(context.Background(), "order", "decline-2")
			return err == nil && in.Stuck
		}, 20*time.Second, 5*time.Millisecond, "the saga is stuck after its attempts")
		in, err := a.rt.Get(context.Background(), "order", "decline-2")
		require.NoError(t, err)
		require.Equal(t, saga.StatusCompensating, in.Status)
		require.Equal(t, "payment provider unavailable", in.LastError)
		require.Equal(t, []string{"notify-customer", "release-payment"}, in.Compensations, "nothing popped by failed attempts")
		// Counted right after the commit that made the saga stuck.
		require.Eventually(t, func() bool {
			return metric(t, a.reg, "marty_saga_stuck_total", map[string]string{"saga": "order"}) == 1
		}, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, 3.0, metric(t, a.reg, "marty_saga_step_failures_total", map[string]string{"saga": "order", "step": "compensate"}),
			"exactly MARTY_SAGA_MAX_ATTEMPTS attempts: a failed attempt is recorded under the saga's lock")
		require.Eventually(t, func() bool { return metric(t, a.reg, "marty_saga_stuck_sagas", nil) == 1 }, 10*time.Second, 10*time.Millisecond,
			"the gauge the MartySagaStuck alert watches")
		stuck, err := a.rt.List(context.Background(), saga.Filter{Saga: "order", Stuck: true})
		require.NoError(t, err)
		require.Len(t, stuck, 1)

		// The dashboard's row and its retry button.
		rows := panelRows(t, a)
		require.Len(t, rows, 1)
		require.Equal(t, "order:decline-2", rows[0]["id"])
		require.Equal(t, "stuck (compensating)", rows[0]["status"])
		require.Equal(t, "compensate", rows[0]["last_step"])

		h.mu.Lock()
		h.releaseFailures = 0 // the provider is back
		h.mu.Unlock()
		resp, err := http.Post(a.admin.URL+"/sagas/order:decline-2/retry", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		a.waitStatus(t, "decline-2", saga.StatusCompensated)
		require.Eventually(t, func() bool { return metric(t, a.reg, "marty_saga_stuck_sagas", nil) == 0 }, 10*time.Second, 10*time.Millisecond)
		require.Eventually(t, func() bool { return len(effects(t, a.db, "decline-2")) == 4 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, a.db, "decline-2"), "each compensation once")
		hist := steps(t, a, "decline-2")
		require.Equal(t, []string{"on test.order_placed", "on test.payment_declined", "compensate", "compensate", "compensate",
			"retry", "compensate release-payment", "compensate notify-customer"}, hist)

		resp, err = http.Post(a.admin.URL+"/sagas/order:nobody/retry", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusNotFound, resp.StatusCode)
	})
}

func TestSagaAbortEndsItWithoutCompensating(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		a := newApp(t, b, nil, orderSaga(&hooks{}))
		a.publish(t, OrderPlaced{OrderID: "silent-4", Customer: "silent"})
		a.waitStatus(t, "silent-4", saga.StatusRunning)
		resp, err := http.Post(a.admin.URL+"/sagas/order:silent-4/abort", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, saga.StatusAborted, a.status(t, "silent-4"))
		require.Zero(t, count(t, a.db, "SELECT COUNT(*) FROM marty_saga_timer"))
		require.Error(t, a.rt.Abort(context.Background(), "order", "silent-4"), "not open any more")

		resp, err = http.Get(a.admin.URL + "/sagas/order:silent-4")
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var body struct {
			Saga    saga.Instance     `json:"saga"`
			History []saga.StepRecord `json:"history"`
		}
		require.NoError(t, jsonDecode(resp, &body))
		require.Equal(t, saga.StatusAborted, body.Saga.Status)
		require.Len(t, body.History, 2)
		require.Equal(t, "abort", body.History[1].Step)
	})
}

func TestSagaOneStepAtATimePerSaga(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		// Each PaymentReserved-like tick increments the state; run many
		// concurrently on the same saga: none may be lost.
		d := saga.New[OrderState]("order")
		saga.Start(d, orderID, func(s *saga.Step[OrderState], e OrderPlaced) error {
			s.State.Steps++
			return nil
		})
		a := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false", "MARTY_DB_MAX_OPEN_CONNS=8"}, d)
		const n = 40
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				env, err := fxevents.NewEnvelope("orders", OrderPlaced{OrderID: "c-1"}, fxevents.DefaultCodec())
				if err == nil {
					err = a.disp.Run(context.Background(), "saga.order", env)
				}
				require.NoError(t, err)
			})
		}
		wg.Wait()
		st, in, err := d.Load(context.Background(), a.rt, "c-1")
		require.NoError(t, err)
		require.Equal(t, n, st.Steps, "every step saw the previous one's state")
		require.Equal(t, int64(n), in.Version)
		require.Equal(t, 1.0, metric(t, a.reg, "marty_saga_started_total", map[string]string{"saga": "order"}), "started once")
	})
}

// TestSagaSubprocess is the process TestSagaKilledMidStep kills; it runs
// only when FXSAGA_SUBPROCESS is set. Its OrderPlaced step blocks (after
// writing its state, before committing) until the process is killed.
func TestSagaSubprocess(t *testing.T) {
	if os.Getenv("FXSAGA_SUBPROCESS") == "" {
		t.Skip("run by TestSagaKilledMidStepCompletesWithEveryEffectOnce")
	}
	env := strings.Split(os.Getenv("FXSAGA_ENV"), "\n")
	marker := os.Getenv("FXSAGA_MARKER")
	block := func(order string) {
		_ = os.WriteFile(marker, []byte(order), 0o600)
		select {} // in the middle of the step, until killed
	}
	h := &hooks{}
	if os.Getenv("FXSAGA_BLOCK") == "compensation" {
		h.beforeRelease = func(_ context.Context, order string) { block(order) }
	} else {
		h.beforePlaced = func(_ context.Context, order string) error { block(order); return nil }
	}
	a := &app{}
	app := fx.New(appOptions(t, a, env, orderSaga(h))...)
	require.NoError(t, app.Start(context.Background()))
	select {}
}

func TestSagaKilledMidStepCompletesWithEveryEffectOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		marker := t.TempDir() + "/in-step"
		cmd := exec.Command(os.Args[0], "-test.run=^TestSagaSubprocess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FXSAGA_SUBPROCESS=1", "FXSAGA_MARKER="+marker,
			"FXSAGA_ENV="+strings.Join(b.env, "\n"))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		// The first app publishes (relay off) while the subprocess relays.
		pub := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false"}, nil)
		require.NoError(t, cmd.Start())
		pub.publish(t, OrderPlaced{OrderID: "kill-1", Customer: "kill", Amount: 5})
		require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 30*time.Second, 5*time.Millisecond,
			"the subprocess entered the step: %s", out)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		require.Equal(t, saga.Status(""), pub.status(t, "kill-1"), "the killed step committed nothing")
		pub.stop(t)

		// A new instance over the same database finishes the saga.
		a := newApp(t, b, nil, orderSaga(&hooks{}))
		a.waitStatus(t, "kill-1", saga.StatusCompleted)
		require.Eventually(t, func() bool { return len(effects(t, a.db, "kill-1")) == 2 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdConfirm}, effects(t, a.db, "kill-1"))
		require.Equal(t, []string{"on test.order_placed", "on test.payment_reserved"}, steps(t, a, "kill-1"))
	})
}

func TestSagaDeadlineThatFallsWhileEveryReplicaIsDownFiresOnceAfterRestart(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		first := newApp(t, b, nil, orderSaga(&hooks{deadline: 300 * time.Millisecond}))
		first.publish(t, OrderPlaced{OrderID: "silent-5", Customer: "silent"})
		first.waitStatus(t, "silent-5", saga.StatusRunning)
		var due int64
		require.NoError(t, first.db.Raw("SELECT due_at FROM marty_saga_timer WHERE saga_key = 'silent-5'").Scan(&due).Error)
		first.stop(t) // every replica down before the deadline
		require.Eventually(t, func() bool { return time.Now().UnixMicro() > due }, 10*time.Second, 5*time.Millisecond)

		// Two replicas come back; the deadline fires once.
		r1 := newApp(t, b, nil, orderSaga(&hooks{deadline: 300 * time.Millisecond}))
		r2 := newApp(t, b, nil, orderSaga(&hooks{deadline: 300 * time.Millisecond}))
		r1.waitStatus(t, "silent-5", saga.StatusCompensated)
		require.Equal(t, []string{"on test.order_placed", "timer payment-deadline",
			"compensate release-payment", "compensate notify-customer"}, steps(t, r2, "silent-5"))
		require.Eventually(t, func() bool { return len(effects(t, r1.db, "silent-5")) == 4 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, r1.db, "silent-5"))
	})
}

func TestTwoReplicasRunAThousandSagas(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the 1,000-saga run takes 20 s (minutes under -race on a loaded machine)")
	}
	b := pgBackend(t)
	env := []string{"MARTY_DB_MAX_OPEN_CONNS=8", "MARTY_EVENTS_RELAY_WORKERS=3", "MARTY_EVENTS_PARTITIONS=16", "MARTY_SAGA_WORKERS=2"}
	r1 := newApp(t, b, env, orderSaga(&hooks{deadline: 2 * time.Second}))
	r2 := newApp(t, b, env, orderSaga(&hooks{deadline: 2 * time.Second}))
	const n = 1000
	// A tenth decline (compensation), a tenth never get an answer (the
	// deadline), the rest complete; publishers on both replicas.
	start := time.Now()
	var wg sync.WaitGroup
	for p, a := range []*app{r1, r2} {
		wg.Go(func() {
			for i := p; i < n; i += 20 {
				evs := make([]fxevents.Event, 0, 10)
				for j := i; j < i+20 && j < n; j += 2 {
					evs = append(evs, OrderPlaced{OrderID: orderFor(j), Customer: customerOf(orderFor(j))})
				}
				a.publish(t, evs...)
			}
		})
	}
	wg.Wait()
	byStatus := func() map[string]int64 {
		var rows []struct {
			Status string
			N      int64
		}
		require.NoError(t, r1.db.Raw("SELECT status, COUNT(*) AS n FROM marty_saga GROUP BY status").Scan(&rows).Error)
		m := map[string]int64{}
		for _, r := range rows {
			m[r.Status] = r.N
		}
		return m
	}
	// Generous: under -race on a loaded 2-core machine this takes minutes.
	require.Eventually(t, func() bool {
		m := byStatus()
		return m["running"] == 0 && m["compensating"] == 0 && m["completed"]+m["compensated"] == n
	}, 5*time.Minute, 100*time.Millisecond, "every saga ended")
	t.Logf("every saga ended after %s: %v", time.Since(start), byStatus())
	require.Equal(t, int64(n*8/10), count(t, r1.db, "SELECT COUNT(*) FROM marty_saga WHERE status = 'completed'"))
	require.Equal(t, int64(n*2/10), count(t, r1.db, "SELECT COUNT(*) FROM marty_saga WHERE status = 'compensated'"))
	require.Zero(t, count(t, r1.db, `SELECT COUNT(*) FROM (SELECT saga_key, step FROM marty_saga_step
		GROUP BY saga_key, step HAVING COUNT(*) > 1) d`), "no step ran twice")
	require.Equal(t, int64(n*8/10*2+n*2/10*4), count(t, r1.db, "SELECT COUNT(*) FROM marty_saga_step"))
	require.Eventually(t, func() bool {
		return count(t, r1.db, "SELECT COUNT(*) FROM effects") == int64(n*8/10*2+n*2/10*4)
	}, 30*time.Second, 20*time.Millisecond, "every command delivered")
	require.Zero(t, count(t, r1.db, `SELECT COUNT(*) FROM (SELECT order_id, type FROM effects
		GROUP BY order_id, type HAVING COUNT(*) > 1) d`), "no command emitted twice")
	steps1 := metric(t, r1.reg, "marty_saga_started_total", map[string]string{"saga": "order"})
	steps2 := metric(t, r2.reg, "marty_saga_started_total", map[string]string{"saga": "order"})
	require.Equal(t, float64(n), steps1+steps2)
	require.Positive(t, steps1)
	require.Positive(t, steps2)
	t.Logf("sagas started per replica: %v, %v", steps1, steps2)
}

// orderFor names order i: every tenth is declined, every tenth (shifted)
// gets no answer.
func orderFor(i int) string {
	switch i % 10 {
	case 3:
		return fmt.Sprint("decline-", i)
	case 7:
		return fmt.Sprint("silent-", i)
	}
	return fmt.Sprint("ok-", i)
}

func TestSagaCompensationPastTheStepTimeoutIsAFailedAttempt(t *testing.T) {
	t.Parallel()
	d := saga.New[OrderState]("order")
	saga.Start(d, orderID, func(s *saga.Step[OrderState], e OrderPlaced) error {
		if err := s.AddCompensation("hang"); err != nil {
			return err
		}
		s.Fail("at once")
		return nil
	})
	d.Compensation("hang", func(s *saga.Step[OrderState]) error {
		<-s.Context().Done() // a provider that never answers
		return s.Context().Err()
	})
	a := newApp(t, sqliteBackend(t), []string{"MARTY_SAGA_STEP_TIMEOUT=50ms", "MARTY_SAGA_MAX_ATTEMPTS=2"}, d)
	a.publish(t, OrderPlaced{OrderID: "h-1"})
	require.Eventually(t, func() bool {
		in, err := a.rt.Get(context.Background(), "order", "h-1")
		return err == nil && in.Stuck
	}, 10*time.Second, 10*time.Millisecond)
	in, err := a.rt.Get(context.Background(), "order", "h-1")
	require.NoError(t, err)
	require.Contains(t, in.LastError, "deadline exceeded")
	require.Equal(t, []string{"hang"}, in.Compensations)
}

func TestSagaKilledMidCompensationCompensatesEachOnce(t *testing.T) {
	forEachDriver(t, func(t *testing.T, b backend) {
		marker := t.TempDir() + "/in-step"
		cmd := exec.Command(os.Args[0], "-test.run=^TestSagaSubprocess$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FXSAGA_SUBPROCESS=1", "FXSAGA_BLOCK=compensation", "FXSAGA_MARKER="+marker,
			"FXSAGA_ENV="+strings.Join(append(append([]string{}, b.env...), "MARTY_SAGA_POLL_INTERVAL=50ms"), "\n"))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		pub := newApp(t, b, []string{"MARTY_EVENTS_RELAY=false"}, nil)
		require.NoError(t, cmd.Start())
		pub.publish(t, OrderPlaced{OrderID: "decline-9", Customer: "decline"})
		require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 30*time.Second, 5*time.Millisecond,
			"the subprocess entered the compensation: %s", out)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		_ = cmd.Wait()
		require.Equal(t, saga.StatusCompensating, pub.status(t, "decline-9"), "killed while compensating")
		pub.stop(t)

		a := newApp(t, b, nil, orderSaga(&hooks{}))
		a.waitStatus(t, "decline-9", saga.StatusCompensated)
		require.Equal(t, []string{"on test.order_placed", "on test.payment_declined",
			"compensate release-payment", "compensate notify-customer"}, steps(t, a, "decline-9"))
		require.Eventually(t, func() bool { return len(effects(t, a.db, "decline-9")) == 4 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{cmdReserve, cmdCancel, cmdRelease, cmdNotify}, effects(t, a.db, "decline-9"))
	})
}
