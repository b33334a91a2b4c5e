package fxtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// TransportTarget is what a TransportFactory returns: a fresh, isolated
// place on a broker (its own stream, topics, queues or vhost) and what the
// suite may do with it. Only Options is required.
type TransportTarget struct {
	// Options join an app to the target: the transport's module and its
	// configuration (fxtest.Env values are allowed: the suite passes them to
	// New directly). Every app built with them exchanges events through the
	// same place. The suite adds fxcore, fxevents and fxrepo, the service
	// name, a database and its handlers. Publishers use the outbox
	// (MARTY_EVENTS_BUS=outbox) unless Options set another bus; consumers
	// the memory bus (their dead letters are re-driven in process).
	Options []fx.Option
	// Shared says that apps built with Options reach each other through a
	// broker. False for the memory bus: each app is then its own bus, and
	// the suite skips the cases that need two apps (consumer restart,
	// replicas, a second service).
	Shared bool
	// Ordered says the transport keeps one aggregate's events in publish
	// order for a handler (when nothing fails); the order case is skipped
	// without it.
	Ordered bool
	// Outage, when set, cuts the apps off the broker and returns the
	// function that brings it back (same data); the outage case is skipped
	// without it.
	Outage func(t *testing.T) (restore func())
}

// TransportFactory returns a new TransportTarget for t (each case of the
// suite calls it once); it cleans up after itself with t.Cleanup.
type TransportFactory func(t *testing.T) TransportTarget

// TransportEvent is the event TransportContract publishes.
type TransportEvent struct {
	Aggregate string `json:"aggregate"`
	Seq       int    `json:"seq"`
}

// EventType implements fxevents.Event.
func (TransportEvent) EventType() string { return "contract.happened" }

// AggregateID implements fxevents.Aggregated: events are keyed (and, on
// ordered transports, kept in order) by Aggregate.
func (e TransportEvent) AggregateID() string { return e.Aggregate }

// TransportEffect is the row an Idempotent handler of the suite writes for
// every event it takes in (the "effect" that must happen exactly once).
type TransportEffect struct {
	ID        int64  `gorm:"primaryKey"`
	Handler   string `gorm:"not null"`
	EventID   string `gorm:"not null;index"`
	Aggregate string `gorm:"not null"`
	Seq       int    `gorm:"not null"`
	Replica   string
}

// TransportContract runs the behaviour every fxevents transport promises
// against the targets newTarget returns, each case in its own target:
//
//   - exactly-once effect: 200 events on 20 aggregates, relayed from an
//     outbox, some failing once after writing their effect; an Idempotent
//     handler's effects happen once each;
//   - per-aggregate order (TransportTarget.Ordered);
//   - an envelope published again with the same id takes effect once;
//   - a consumer stopped and started again loses nothing;
//   - two replicas of a service share its consumer, each effect once;
//   - a second service receives every event too;
//   - a handler that keeps failing is dead-lettered after MaxAttempts,
//     not delivered again, and re-driven from the dead-letter store;
//   - a broker outage (TransportTarget.Outage) delays events and loses none.
//
// fxevents runs it for the memory bus, natsjs on NATS JetStream, kafka on
// kfake. A transport's own features (its dead-letter destination, headers,
// metrics) are its own tests' business.
func TransportContract(t *testing.T, newTarget TransportFactory) {
	t.Run("exactly-once effect with the inbox across 20 aggregates", func(t *testing.T) {
		h := newContract(t, newTarget(t))
		db := h.database()
		var failed sync.Map
		cons := h.consumer("notifier", db, "r0", func(ev TransportEvent, id string) error {
			if ev.Seq%5 == 0 {
				if _, again := failed.LoadOrStore(id, true); !again {
					return fmt.Errorf("fails once after writing its effect (seq %d)", ev.Seq)
				}
			}
			return nil
		})
		pub := h.publisher("orders", cons)
		const aggregates, each = 20, 10
		h.publish(pub, aggregates, each, 0)
		h.waitEffects(cons, aggregates*each)
		h.requireEffectsOnce(cons, aggregates*each)
		if got := countFailed(&failed); got != aggregates*each/5 {
			t.Fatalf("failing attempts: got %d, want %d (every 5th event once)", got, aggregates*each/5)
		}
	})

	t.Run("per-aggregate order", func(t *testing.T) {
		target := newTarget(t)
		if !target.Ordered {
			t.Skip("the transport does not promise per-aggregate order (TransportTarget.Ordered is false)")
		}
		h := newContract(t, target)
		cons := h.consumer("notifier", h.database(), "r0", nil)
		pub := h.publisher("orders", cons)
		const aggregates, each = 20, 10
		h.publish(pub, aggregates, each, 0)
		h.waitEffects(cons, aggregates*each)
		seen := map[string]bool{}
		last := map[string]int{}
		for _, d := range h.deliveries() {
			if seen[d.id] {
				continue // a redelivery; order is about first deliveries
			}
			seen[d.id] = true
			if prev, ok := last[d.ev.Aggregate]; ok && d.ev.Seq <= prev {
				t.Fatalf("aggregate %s: seq %d delivered after seq %d", d.ev.Aggregate, d.ev.Seq, prev)
			}
			last[d.ev.Aggregate] = d.ev.Seq
		}
		if len(last) != aggregates {
			t.Fatalf("aggregates delivered: got %d, want %d", len(last), aggregates)
		}
	})

	t.Run("an event id published again takes effect once", func(t *testing.T) {
		h := newContract(t, newTarget(t))
		cons := h.consumer("notifier", h.database(), "r0", nil)
		pub := h.publisher("orders", cons)
		env, err := fxevents.NewEnvelope("orders", TransportEvent{Aggregate: "a1", Seq: 1}, fxevents.DefaultCodec())
		if err != nil {
			t.Fatalf("NewEnvelope: %v", err)
		}
		h.republish(pub, env)
		h.republish(pub, env, env)
		h.publish(pub, 1, 1, 2) // a later event, to know the copies had their chance
		h.waitEffects(cons, 2)
		h.waitHandled(env.ID, 1)
		h.requireEffectsOnce(cons, 2)
	})

	t.Run("a consumer restarted loses nothing", func(t *testing.T) {
		target := newTarget(t)
		if !target.Shared {
			t.Skip("apps do not share a broker (TransportTarget.Shared is false): the consumer is the publisher")
		}
		h := newContract(t, target)
		db := h.database()
		first := h.consumer("notifier", db, "r0", nil)
		pub := h.publisher("orders", first)
		h.publish(pub, 10, 5, 0)
		h.waitDistinct(50)
		stopApp(t, first)
		h.publish(pub, 10, 5, 5) // while nobody consumes
		second := h.consumer("notifier", db, "r1", nil)
		h.waitEffects(second, 100)
		h.requireEffectsOnce(second, 100)
	})

	t.Run("two replicas share a consumer", func(t *testing.T) {
		target := newTarget(t)
		if !target.Shared {
			t.Skip("apps do not share a broker (TransportTarget.Shared is false)")
		}
		h := newContract(t, target)
		db := h.database()
		r0 := h.consumer("notifier", db, "r0", nil)
		h.consumer("notifier", db, "r1", nil)
		pub := h.publisher("orders", r0)
		// Rounds of one event per aggregate until both replicas took a
		// share (a consumer group may still be assigning partitions).
		const aggregates = 20
		n := 0
		for round := 0; ; round++ {
			h.publish(pub, aggregates, 1, round)
			n += aggregates
			h.waitEffects(r0, n)
			if h.byReplica("r0") > 0 && h.byReplica("r1") > 0 {
				break
			}
			if round == 50 {
				t.Fatalf("after %d events one replica handled none (r0 %d, r1 %d)", n, h.byReplica("r0"), h.byReplica("r1"))
			}
		}
		h.requireEffectsOnce(r0, n)
	})

	t.Run("a second service receives every event", func(t *testing.T) {
		target := newTarget(t)
		if !target.Shared {
			t.Skip("apps do not share a broker (TransportTarget.Shared is false)")
		}
		h := newContract(t, target)
		notifier := h.consumer("notifier", h.database(), "n", nil)
		audit := h.consumer("audit", h.database(), "a", nil)
		pub := h.publisher("orders", notifier)
		h.publish(pub, 20, 5, 0)
		h.waitEffects(notifier, 100)
		h.waitEffects(audit, 100)
		h.requireEffectsOnce(notifier, 100)
		h.requireEffectsOnce(audit, 100)
	})

	t.Run("a failing handler is dead-lettered, then re-driven", func(t *testing.T) {
		h := newContract(t, newTarget(t))
		var heal atomic.Bool
		var attempts atomic.Int32
		cons := h.consumer("billing", h.database(), "r0", func(ev TransportEvent, _ string) error {
			if ev.Aggregate != "bad" || heal.Load() {
				return nil
			}
			attempts.Add(1)
			return fmt.Errorf("card declined for %s", ev.Aggregate)
		}, Env("MARTY_EVENTS_MAX_ATTEMPTS=3"))
		pub := h.publisher("orders", cons)
		h.publishOne(pub, TransportEvent{Aggregate: "bad", Seq: 1})
		dead := cons.g.Dispatcher.DeadLetters()
		var dls []fxevents.DeadLetter
		h.eventually("the event is dead-lettered", func() bool {
			dls, _ = dead.List(context.Background(), 0)
			return len(dls) == 1
		})
		dl := dls[0]
		if dl.Handler != contractHandler || dl.Attempts != 3 || dl.Error != "card declined for bad" || dl.Envelope.AggregateID != "bad" {
			t.Fatalf("dead letter: got handler %q, %d attempts, error %q, aggregate %q; want %q, 3, %q, %q",
				dl.Handler, dl.Attempts, dl.Error, dl.Envelope.AggregateID, contractHandler, "card declined for bad", "bad")
		}
		// Nothing more for the dead event: later events flow, it stays at 3 attempts.
		h.publish(pub, 3, 1, 2)
		h.waitEffects(cons, 3)
		if n := attempts.Load(); n != 3 {
			t.Fatalf("attempts of the dead-lettered event: got %d, want 3", n)
		}
		heal.Store(true)
		if err := dead.Retry(context.Background(), dl.ID); err != nil {
			t.Fatalf("re-drive the dead letter: %v", err)
		}
		h.waitHandled(dl.Envelope.ID, 1)
		h.waitEffects(cons, 4)
		h.requireEffectsOnce(cons, 4)
	})

	t.Run("a broker outage delays events and loses none", func(t *testing.T) {
		target := newTarget(t)
		if target.Outage == nil {
			t.Skip("the factory cannot cut the broker (TransportTarget.Outage is nil)")
		}
		h := newContract(t, target)
		cons := h.consumer("notifier", h.database(), "r0", nil)
		pub := h.publisher("orders", cons)
		h.publish(pub, 10, 3, 0)
		h.waitDistinct(30)
		restore := target.Outage(t)
		h.publish(pub, 10, 3, 3) // the outbox takes them while the broker is away
		restore()
		h.waitEffects(cons, 60)
		h.requireEffectsOnce(cons, 60)
		var dead int64
		if err := pub.DB().Raw("SELECT COUNT(*) FROM marty_outbox_dead").Scan(&dead).Error; err != nil {
			t.Fatalf("count the outbox's dead letters: %v", err)
		}
		if dead != 0 {
			t.Fatalf("the outage dead-lettered %d outbox rows; it must only delay them", dead)
		}
	})
}

const contractHandler = "contract-effects"

// contract is one case's apps and what their handlers saw.
type contract struct {
	t      *testing.T
	target TransportTarget

	mu  sync.Mutex
	log []delivery
}

type delivery struct {
	id      string
	ev      TransportEvent
	replica string
}

type contractApp struct {
	*App
	bus       fxevents.Bus
	uow       fxrepo.UnitOfWork
	transport fxevents.Transport
}

func newContract(t *testing.T, target TransportTarget) *contract {
	if len(target.Options) == 0 {
		t.Fatalf("fxtest: TransportContract: the factory returned no Options")
	}
	return &contract{t: t, target: target}
}

// database returns the MARTY_DB_* of a fresh database: PostgreSQL when
// MARTY_TEST_POSTGRES_DSN is set, else a SQLite file.
func (c *contract) database() []string {
	if os.Getenv(pgtest.EnvDSN) != "" {
		return []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + pgtest.NewDatabase(c.t)}
	}
	return []string{"MARTY_DB_DRIVER=sqlite", "MARTY_DB_DSN=file:" + filepath.Join(c.t.TempDir(), "contract.db"),
		"MARTY_DB_BUSY_TIMEOUT=10s"}
}

// app builds and starts an app of service on db.
func (c *contract) app(service string, db []string, extra ...fx.Option) *contractApp {
	c.t.Helper()
	ca := &contractApp{}
	env := append([]string{
		"MARTY_SERVICE_NAME=" + service, "MARTY_LOG_LEVEL=info",
		"MARTY_EVENTS_BUS=outbox", "MARTY_EVENTS_SYNC=false", "MARTY_EVENTS_POLL_INTERVAL=50ms",
		"MARTY_EVENTS_BACKOFF_INITIAL=20ms", "MARTY_EVENTS_BACKOFF_MAX=200ms",
	}, db...)
	opts := []fx.Option{
		WithModules(fxcore.Module, fxevents.Module, fxrepo.Module),
		Env(env...),
		WaitTimeout(30 * time.Second),
		fxrepo.AsModel(&TransportEffect{}),
		fx.Populate(&ca.bus, &ca.uow),
		fx.Invoke(func(in struct {
			fx.In
			T fxevents.Transport `optional:"true"`
		}) {
			ca.transport = in.T
		}),
	}
	opts = append(opts, c.target.Options...)
	opts = append(opts, extra...)
	ca.App = New(c.t, opts...)
	return ca
}

// consumer starts an app of service whose Idempotent handler records every
// event and writes its effect, then returns fail's error (nil: none). With
// a target that is not Shared it is the publisher too.
func (c *contract) consumer(service string, db []string, replica string, fail func(ev TransportEvent, id string) error, extra ...fx.Option) *contractApp {
	c.t.Helper()
	h := fxevents.AsHandler(func(gdb *gorm.DB) fxevents.Handler {
		return fxevents.Idempotent(fxevents.HandlerFunc(contractHandler, func(ctx context.Context, ev TransportEvent) error {
			id := fxevents.CorrelationID(ctx)
			c.mu.Lock()
			c.log = append(c.log, delivery{id: id, ev: ev, replica: replica})
			c.mu.Unlock()
			err := fxrepo.DB(ctx, gdb).Create(&TransportEffect{Handler: service, EventID: id, Aggregate: ev.Aggregate, Seq: ev.Seq, Replica: replica}).Error
			if err != nil {
				return err
			}
			if fail != nil {
				return fail(ev, id)
			}
			return nil
		}))
	})
	// Consumers publish nothing: the memory bus, whose dead letters are
	// re-driven to the handler in process. (A dead letter of the outbox
	// bus is re-driven through the broker, to every consumer of the event.)
	return c.app(service, db, append([]fx.Option{h, Env("MARTY_EVENTS_BUS=memory")}, extra...)...)
}

// publisher returns the app that publishes: a new one on its own database
// when the target is shared, else cons itself.
func (c *contract) publisher(service string, cons *contractApp) *contractApp {
	c.t.Helper()
	if !c.target.Shared {
		return cons
	}
	return c.app(service, c.database())
}

// publish publishes aggregates×each events, seqs from first upwards, one
// aggregate after another in each round (interleaved), each in its own
// unit of work (the outbox's transaction).
func (c *contract) publish(pub *contractApp, aggregates, each, first int) {
	c.t.Helper()
	for s := first; s < first+each; s++ {
		for a := range aggregates {
			c.publishOne(pub, TransportEvent{Aggregate: fmt.Sprintf("agg-%02d", a), Seq: s})
		}
	}
}

func (c *contract) publishOne(pub *contractApp, ev TransportEvent) {
	c.t.Helper()
	err := pub.uow.Do(context.Background(), func(ctx context.Context) error { return pub.bus.Publish(ctx, ev) })
	if err != nil {
		c.t.Fatalf("publish %+v: %v", ev, err)
	}
}

// republish sends envelopes as a transport would deliver them again: with
// Transport.Publish, or (no transport: the memory bus) through the
// dispatcher to the handlers of their type.
func (c *contract) republish(pub *contractApp, envs ...fxevents.Envelope) {
	c.t.Helper()
	ctx := context.Background()
	if pub.transport != nil {
		if err := pub.transport.Publish(ctx, envs...); err != nil {
			c.t.Fatalf("Transport.Publish: %v", err)
		}
		return
	}
	d := pub.g.Dispatcher
	for _, env := range envs {
		for _, name := range d.HandlersFor(env.Type) {
			if err := d.Run(ctx, name, env); err != nil {
				c.t.Fatalf("Dispatcher.Run(%s): %v", name, err)
			}
		}
	}
}

func (c *contract) deliveries() []delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivery(nil), c.log...)
}

func (c *contract) distinct() int {
	seen := map[string]bool{}
	for _, d := range c.deliveries() {
		seen[d.id] = true
	}
	return len(seen)
}

func (c *contract) byReplica(r string) int {
	n := 0
	for _, d := range c.deliveries() {
		if d.replica == r {
			n++
		}
	}
	return n
}

func (c *contract) eventually(what string, ok func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			c.t.Fatalf("fxtest: TransportContract: timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *contract) waitDistinct(n int) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("%d distinct events delivered (have %d)", n, c.distinct()), func() bool { return c.distinct() >= n })
}

// waitHandled waits until the handler saw event id at least n times.
func (c *contract) waitHandled(id string, n int) {
	c.t.Helper()
	c.eventually("event "+id+" delivered", func() bool {
		k := 0
		for _, d := range c.deliveries() {
			if d.id == id {
				k++
			}
		}
		return k >= n
	})
}

// effects counts a consumer app's committed effect rows and distinct event ids.
func effects(a *contractApp) (rows, distinct int64, err error) {
	db := a.DB()
	if err = db.Model(&TransportEffect{}).Count(&rows).Error; err != nil {
		return
	}
	err = db.Model(&TransportEffect{}).Distinct("event_id").Count(&distinct).Error
	return
}

func (c *contract) waitEffects(a *contractApp, n int) {
	c.t.Helper()
	c.eventually(fmt.Sprintf("%d effects committed", n), func() bool {
		rows, _, err := effects(a)
		return err == nil && rows >= int64(n)
	})
}

// requireEffectsOnce checks there are exactly n effect rows, one per event.
func (c *contract) requireEffectsOnce(a *contractApp, n int) {
	c.t.Helper()
	rows, distinct, err := effects(a)
	if err != nil {
		c.t.Fatalf("count effects: %v", err)
	}
	if rows != int64(n) || distinct != int64(n) {
		c.t.Fatalf("effects: got %d rows of %d distinct events, want %d of %d (each effect exactly once)", rows, distinct, n, n)
	}
	var dupes int64
	if err := a.DB().Raw("SELECT COUNT(*) FROM (SELECT event_id FROM transport_effects GROUP BY event_id HAVING COUNT(*) > 1) d").
		Scan(&dupes).Error; err != nil {
		c.t.Fatalf("count duplicated effects: %v", err)
	}
	if dupes != 0 {
		c.t.Fatalf("%d events took effect more than once", dupes)
	}
}

func stopApp(t *testing.T, a *contractApp) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatalf("stop the consumer: %v", err)
	}
}

func countFailed(m *sync.Map) int {
	n := 0
	m.Range(func(any, any) bool { n++; return true })
	return n
}
