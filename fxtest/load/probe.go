package load

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxrepo"
)

// ProbeEventType is the type of the events a Probe publishes.
const ProbeEventType = "martyfx.load.probe"

// ProbeHandlerName is the name of the handler a Probe registers.
const ProbeHandlerName = "martyfx.load.probe"

// ProbeEvent is the event a Probe publishes: its run and a sequence number.
type ProbeEvent struct {
	Run string `json:"run"`
	Seq uint64 `json:"seq"`
}

// EventType implements fxevents.Event.
func (ProbeEvent) EventType() string { return ProbeEventType }

// Probe measures the app's event path from Publish to handled: its target
// publishes a ProbeEvent through the app's fxevents.Bus and returns when the
// probe's handler, run by the app's dispatcher, has received it. Whatever
// the app's bus does on the way counts: the memory bus's queues, the
// outbox's insert and relay (MARTY_EVENTS_BUS=outbox), a transport's broker
// (natsjs.Module).
//
//	probe := load.NewProbe()
//	app := fxtest.New(t, probe.Option(), fxtest.Env("MARTY_EVENTS_BUS=outbox"))
//	res := load.Test(t, probe.Target(), load.Rate(200), load.For(5*time.Second))
//
// An app has at most one Probe. It ignores probe events of other runs (a
// broker shared with earlier test runs) and duplicates (at-least-once
// delivery). With MARTY_EVENTS_REQUIRE_TX=true it publishes in a unit of
// work. fxtest records every published event, so a long run keeps a record
// of each probe event in memory.
type Probe struct {
	run string
	seq atomic.Uint64

	mu      sync.Mutex
	waiting map[uint64]chan struct{}

	bus fxevents.Bus
	uow fxrepo.UnitOfWork
	tx  bool
}

// NewProbe returns a Probe; give its Option to the app.
func NewProbe() *Probe {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Probe{run: hex.EncodeToString(b[:]), waiting: map[uint64]chan struct{}{}}
}

type probeIn struct {
	fx.In
	Bus    fxevents.Bus
	Config fxevents.Config   `optional:"true"`
	UoW    fxrepo.UnitOfWork `optional:"true"`
}

// Option registers the probe's handler with the app and takes the app's
// bus: pass it to fxtest.New (or fx.New) with the app's modules.
func (p *Probe) Option() fx.Option {
	return fx.Options(
		fxevents.AsHandler(fxevents.HandlerFunc(ProbeHandlerName, p.handle)),
		fx.Invoke(func(in probeIn) {
			p.bus, p.uow, p.tx = in.Bus, in.UoW, in.Config.RequireTx
		}),
	)
}

// errNoApp is the target's error before the probe's Option is in an app.
var errNoApp = errors.New("load: the probe is in no app: pass probe.Option() to fxtest.New")

// Target is the probe's publish-to-handled round trip.
func (p *Probe) Target() Target {
	return Target{Name: "publish " + ProbeEventType + " until handled", Do: p.roundTrip}
}

func (p *Probe) roundTrip(ctx context.Context) error {
	if p.bus == nil {
		return errNoApp
	}
	seq := p.seq.Add(1)
	ch := make(chan struct{})
	p.mu.Lock()
	p.waiting[seq] = ch
	p.mu.Unlock()
	ev := ProbeEvent{Run: p.run, Seq: seq}
	var err error
	if p.tx && p.uow != nil {
		err = p.uow.Do(ctx, func(ctx context.Context) error { return p.bus.Publish(ctx, ev) })
	} else {
		err = p.bus.Publish(ctx, ev)
	}
	if err != nil {
		p.forget(seq)
		return fmt.Errorf("load: publish the probe event: %w", err)
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		p.forget(seq)
		return fmt.Errorf("load: waiting for the probe event %d to be handled: %w", seq, ctx.Err())
	}
}

func (p *Probe) forget(seq uint64) {
	p.mu.Lock()
	delete(p.waiting, seq)
	p.mu.Unlock()
}

// handle is the probe's event handler: it wakes the operation waiting for
// the event.
func (p *Probe) handle(_ context.Context, ev ProbeEvent) error {
	if ev.Run != p.run {
		return nil // another run's, or another app's
	}
	p.mu.Lock()
	ch, ok := p.waiting[ev.Seq]
	delete(p.waiting, ev.Seq)
	p.mu.Unlock()
	if ok {
		close(ch)
	}
	return nil
}

// Pending is the number of probe events published and not yet handled (or
// given up on).
func (p *Probe) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.waiting)
}
