package fxevents

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// DeadLetter is an event a handler failed on its last attempt (or on a
// Permanent error), kept with the error.
type DeadLetter struct {
	// ID identifies the dead letter in its store (for re-drive).
	ID string `json:"id"`
	// Handler is the name of the handler that failed ("" for an outbox row
	// that failed to reach the transport).
	Handler string `json:"handler"`
	// Envelope is the event as it was published.
	Envelope Envelope `json:"envelope"`
	// Error is the last attempt's error.
	Error string `json:"error"`
	// Attempts is how many attempts were made.
	Attempts int `json:"attempts"`
	// At is when it was dead-lettered.
	At time.Time `json:"at"`
}

// DeadLetterStore keeps dead letters and re-drives them. The memory bus and
// transports use an in-memory ring of Config.DeadLetterCapacity; the outbox
// uses the marty_outbox_dead table. The admin routes /events/dead serve it.
type DeadLetterStore interface {
	// Add keeps a dead letter (assigning its ID).
	Add(ctx context.Context, dl DeadLetter) error
	// List returns up to limit dead letters, newest first.
	List(ctx context.Context, limit int) ([]DeadLetter, error)
	// Retry re-drives one dead letter: it is removed from the store and
	// handled again (and comes back if it fails again).
	Retry(ctx context.Context, id string) error
	// RetryAll re-drives every dead letter and returns how many.
	RetryAll(ctx context.Context) (int, error)
}

// memoryDeadLetters is the in-memory ring of the most recent dead letters.
// Retry runs the handler again at once, through the dispatcher (all its
// attempts), and returns its error.
type memoryDeadLetters struct {
	mu   sync.Mutex
	ring []DeadLetter
	next int // ring write position
	n    int // stored
	seq  uint64
	run  func(ctx context.Context, dl DeadLetter) error
}

// newMemoryDeadLetters returns a ring of capacity dead letters; redrive
// runs one again (nil makes Retry fail).
func newMemoryDeadLetters(capacity int, redrive func(ctx context.Context, dl DeadLetter) error) *memoryDeadLetters {
	if capacity <= 0 {
		capacity = 1
	}
	return &memoryDeadLetters{ring: make([]DeadLetter, capacity), run: redrive}
}

// Add keeps dl, evicting the oldest when full.
func (d *memoryDeadLetters) Add(_ context.Context, dl DeadLetter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	dl.ID = strconv.FormatUint(d.seq, 10)
	d.ring[d.next] = dl
	d.next = (d.next + 1) % len(d.ring)
	if d.n < len(d.ring) {
		d.n++
	}
	return nil
}

// List returns up to limit dead letters, newest first (limit <= 0: all).
func (d *memoryDeadLetters) List(_ context.Context, limit int) ([]DeadLetter, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if limit <= 0 || limit > d.n {
		limit = d.n
	}
	out := make([]DeadLetter, 0, limit)
	for i := 1; i <= limit; i++ {
		out = append(out, d.ring[(d.next-i+len(d.ring))%len(d.ring)])
	}
	return out, nil
}

func (d *memoryDeadLetters) take(id string) (DeadLetter, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := 1; i <= d.n; i++ {
		pos := (d.next - i + len(d.ring)) % len(d.ring)
		if d.ring[pos].ID != id {
			continue
		}
		dl := d.ring[pos]
		// Close the gap: shift the older entries one slot newer.
		for j := i; j < d.n; j++ {
			from := (d.next - j - 1 + len(d.ring)) % len(d.ring)
			to := (d.next - j + len(d.ring)) % len(d.ring)
			d.ring[to] = d.ring[from]
		}
		d.ring[(d.next-d.n+len(d.ring))%len(d.ring)] = DeadLetter{}
		d.n--
		return dl, true
	}
	return DeadLetter{}, false
}

// Retry removes the dead letter id and runs it again.
func (d *memoryDeadLetters) Retry(ctx context.Context, id string) error {
	dl, ok := d.take(id)
	if !ok {
		return ErrDeadLetterNotFound
	}
	if d.run == nil {
		return errors.New("fxevents: dead letters cannot be re-driven here")
	}
	return d.run(ctx, dl)
}

// RetryAll re-drives every dead letter, oldest first; it returns how many
// were re-driven and their joined errors.
func (d *memoryDeadLetters) RetryAll(ctx context.Context) (int, error) {
	all, _ := d.List(ctx, 0)
	var errs []error
	n := 0
	for i := len(all) - 1; i >= 0; i-- {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := d.Retry(ctx, all[i].ID); err != nil {
			if errors.Is(err, ErrDeadLetterNotFound) {
				continue
			}
			errs = append(errs, err)
		}
		n++
	}
	return n, errors.Join(errs...)
}
