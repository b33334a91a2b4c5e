package fxcore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// recorder records the phases of a stop sequence in the order they happen.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// newRecorded returns a Stopping whose drain wait is recorded (and not
// slept), and its logs.
func newRecorded(r *recorder) (*Stopping, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	s := NewStopping(WithStopLogger(zap.New(core)))
	s.wait = func(_ context.Context, d time.Duration) error {
		r.add("drain " + d.String())
		return nil
	}
	s.OnBegin(func() { r.add("readiness off") })
	return s, logs
}

func stage(r *recorder, name string, order StopOrder, drain time.Duration, err error) StopStage {
	return StopStage{Name: name, Order: order, DrainDelay: drain, Stop: func(context.Context) error {
		r.add("stop " + name)
		return err
	}}
}

func TestStopSequenceRunsOnceInOrderWithTheLargestDrain(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	s, logs := newRecorded(r)
	failed := errors.New("boom")
	// Added in another order than they stop in.
	admin := s.AddStage(stage(r, "admin", StopAdmin, 0, nil))
	back := s.AddStage(stage(r, "back", StopBack, 3*time.Second, failed))
	front := s.AddStage(stage(r, "front", StopFront, 2*time.Second, nil))
	front2 := s.AddStage(stage(r, "front2", StopFront, time.Second, nil))

	// Every server's stop hook, and the app's runner, at once.
	errs := make([]error, 5)
	var wg sync.WaitGroup
	for i, stop := range []func(context.Context) error{admin.Stop, back.Stop, front.Stop, front2.Stop, s.Stop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = stop(context.Background())
		}()
	}
	wg.Wait()

	require.Equal(t, []string{
		"readiness off", "drain 3s", "stop front", "stop front2", "stop back", "stop admin",
	}, r.all(), "readiness off everywhere, one drain (the largest), then the stages in order")
	require.NoError(t, errs[0], "admin")
	require.ErrorIs(t, errs[1], failed, "back: its own error")
	require.NoError(t, errs[2], "front")
	require.NoError(t, errs[3], "front2")
	require.ErrorIs(t, errs[4], failed, "the sequence: every stage's error")

	// Stopping again changes nothing and returns the same errors.
	require.ErrorIs(t, back.Stop(context.Background()), failed)
	require.NoError(t, front.Stop(context.Background()))
	require.ErrorIs(t, s.Stop(context.Background()), failed)
	require.Len(t, r.all(), 6)

	require.Equal(t, 1, logs.FilterMessageSnippet("waiting the drain delay").Len())
	done := logs.FilterMessage("stop sequence finished with errors").All()
	require.Len(t, done, 1)
	f := done[0].ContextMap()
	require.Contains(t, f, "duration")
	require.Equal(t, []any{"front", "front2", "back", "admin"}, f["stages"])
	require.Equal(t, 3*time.Second, f["drain_delay"])
}

func TestStopSequenceWithoutDrainDelayDoesNotWait(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	s, logs := newRecorded(r)
	g := s.AddStage(stage(r, "only", StopBack, 0, nil))
	require.NoError(t, g.Stop(context.Background()))
	require.Equal(t, []string{"readiness off", "stop only"}, r.all())
	require.Equal(t, 1, logs.FilterMessage("stop sequence finished").Len())
	require.Equal(t, 0, logs.FilterMessageSnippet("drain delay").Len())
}

func TestStopDeadlineDuringTheDrainStopsEveryStageHard(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	s := NewStopping(WithStopLogger(zap.New(core))) // the real wait
	ctxDone := map[string]bool{}
	var mu sync.Mutex
	add := func(name string, order StopOrder, drain time.Duration) *Stage {
		return s.AddStage(StopStage{Name: name, Order: order, DrainDelay: drain, Stop: func(ctx context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			ctxDone[name] = ctx.Err() != nil
			return nil // an idle server stops at once even with its deadline gone
		}})
	}
	front := add("front", StopFront, time.Hour)
	back := add("back", StopBack, 0)
	admin := add("admin", StopAdmin, 0)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := front.Stop(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "fxcore: the stop deadline cut the drain delay (1h0m0s) short, stopping hard")
	require.Equal(t, map[string]bool{"front": true, "back": true, "admin": true}, ctxDone,
		"every stage ran, with the deadline gone (a hard stop)")
	require.NoError(t, back.Stop(ctx), "the drain's error is reported once, by the first stage")
	require.NoError(t, admin.Stop(ctx))
	require.ErrorIs(t, s.Stop(ctx), context.DeadlineExceeded)
	require.Equal(t, 1, logs.FilterMessage("stop deadline during the drain delay: stopping the servers hard").Len())
	require.Equal(t, 1, logs.FilterMessage("stop sequence finished with errors").Len())
}

func TestStageWaitingForAnotherCallersSequenceHonoursItsDeadline(t *testing.T) {
	t.Parallel()
	s := NewStopping()
	entered, release := make(chan struct{}), make(chan struct{})
	first := s.AddStage(StopStage{Name: "slow", Order: StopFront, Stop: func(context.Context) error {
		close(entered)
		<-release
		return nil
	}})
	later := s.AddStage(StopStage{Name: "later", Order: StopAdmin})
	go func() { _ = first.Stop(context.Background()) }()
	<-entered

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := later.Stop(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorContains(t, err, `fxcore: stop stage "later": the stop deadline came before the stop sequence reached it`)
	require.ErrorIs(t, s.Stop(ctx), context.Canceled)

	close(release)
	require.NoError(t, later.Stop(context.Background()), "once the sequence reaches it")
	require.NoError(t, s.Stop(context.Background()))
}

func TestStageAddedAfterTheSequenceBeganStopsAlone(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	s, _ := newRecorded(r)
	require.NoError(t, s.Stop(context.Background()))
	late := s.AddStage(stage(r, "late", StopFront, time.Minute, nil))
	require.NoError(t, late.Stop(context.Background()))
	require.NoError(t, late.Stop(context.Background()))
	require.Equal(t, []string{"readiness off", "stop late"}, r.all(), "no second drain, stopped once")
}

// TestStopSequenceWithPlainFxWhateverTheHookOrder: with fx.New(...).Run()
// (no martyfx.Run), the first server's stop hook runs the sequence and the
// others return their own stage's error.
func TestStopSequenceWithPlainFxWhateverTheHookOrder(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	var s *Stopping
	server := func(name string, order StopOrder) fx.Option {
		return fx.Invoke(func(lc fx.Lifecycle, st *Stopping) {
			var g *Stage
			lc.Append(fx.Hook{
				OnStart: func(context.Context) error {
					g = st.AddStage(stage(r, name, order, 0, nil))
					return nil
				},
				OnStop: func(ctx context.Context) error { return g.Stop(ctx) },
			})
		})
	}
	// Fx stops hooks in reverse: the admin server's hook runs first.
	app := fx.New(fx.NopLogger, fx.Provide(NewStopping), fx.Populate(&s),
		server("front", StopFront), server("back", StopBack), server("admin", StopAdmin),
		fx.Invoke(func(st *Stopping) { st.OnBegin(func() { r.add("readiness off") }) }),
	)
	require.NoError(t, app.Start(context.Background()))
	require.NoError(t, app.Stop(context.Background()))
	require.Equal(t, []string{"readiness off", "stop front", "stop back", "stop admin"}, r.all())
}

func TestStartGateWaitsForEveryDeclaredServer(t *testing.T) {
	t.Parallel()
	s := NewStopping()
	isClosed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	require.True(t, isClosed(s.Started()), "nothing declared: started")
	api, grpc := s.ExpectStart(), s.ExpectStart()
	started := s.Started()
	require.False(t, isClosed(started))
	api()
	api() // once only: the second call does not count for grpc
	require.False(t, isClosed(started), "grpc still to listen")
	grpc()
	require.True(t, isClosed(started))
	require.True(t, isClosed(s.Started()))
}
