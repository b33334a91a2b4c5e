package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.uber.org/fx"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
)

// benchEvent encodes to about 100 bytes of JSON.
type benchEvent struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	Amount     int64  `json:"amount"`
	Currency   string `json:"currency"`
	SKU        string `json:"sku"`
}

func (benchEvent) EventType() string     { return "bench.order_placed" }
func (e benchEvent) AggregateID() string { return e.OrderID }

func newBenchEvent(i int) benchEvent {
	return benchEvent{
		OrderID:    fmt.Sprintf("ord-%08d", i%4096),
		CustomerID: fmt.Sprintf("cus-%08d", i%977),
		Amount:     int64(1000 + i%5000),
		Currency:   "EUR",
		SKU:        "SKU-0000-0000-0000-0001",
	}
}

// eventsCases are run one per subprocess so each peak RSS is its own.
var eventsCases = []string{
	"bare-chan/1h", "martyfx-memory/1h", "watermill-gochannel-default/1h", "watermill-gochannel-blockack/1h",
	"bare-chan/8h", "martyfx-memory/8h", "watermill-gochannel-default/8h", "watermill-gochannel-blockack/8h",
}

// BenchmarkEvents measures events/s from Publish to handled (the handler
// decodes the ~100-byte JSON payload) for 1,000,000 events (BENCH_EVENTS_N)
// and one or eight handlers, for martyfx's memory bus, watermill's GoChannel
// (default config, and BlockPublishUntilSubscriberAck) and a bare buffered
// Go channel. Each case runs once in its own subprocess (the test binary
// re-executed with BENCH_EVENTS_CASE set) and reports events/s and the
// process's peak RSS (VmHWM from /proc/self/status). Run with -benchtime=1x.
func BenchmarkEvents(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BENCH_EVENTS_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	for _, c := range eventsCases {
		b.Run(c, func(b *testing.B) {
			for b.Loop() {
				rate, rss := runEventsSubprocess(b, c, n)
				b.ReportMetric(rate, "events/s")
				b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
			}
		})
	}
}

func runEventsSubprocess(b *testing.B, name string, n int) (float64, int64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventsCase$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "BENCH_EVENTS_CASE="+name, "BENCH_EVENTS_N="+strconv.Itoa(n), "MARTY_LOG_LEVEL=error")
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("case %s: %v\n%s", name, err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var rate float64
		var rss int64
		if _, err := fmt.Sscanf(sc.Text(), "RESULT rate=%f rss=%d", &rate, &rss); err == nil {
			return rate, rss
		}
	}
	b.Fatalf("case %s printed no RESULT:\n%s", name, out)
	return 0, 0
}

// TestEventsCase is the subprocess side of BenchmarkEvents.
func TestEventsCase(t *testing.T) {
	name := os.Getenv("BENCH_EVENTS_CASE")
	if name == "" {
		t.Skip("run by BenchmarkEvents")
	}
	n, _ := strconv.Atoi(os.Getenv("BENCH_EVENTS_N"))
	kind, hs, _ := strings.Cut(name, "/")
	handlers := 1
	if hs == "8h" {
		handlers = 8
	}
	var elapsed time.Duration
	switch kind {
	case "bare-chan":
		elapsed = runBareChan(n, handlers)
	case "martyfx-memory":
		elapsed = runMartyMemory(t, n, handlers)
	case "watermill-gochannel-default":
		elapsed = runWatermill(t, n, handlers, gochannel.Config{})
	case "watermill-gochannel-blockack":
		elapsed = runWatermill(t, n, handlers, gochannel.Config{BlockPublishUntilSubscriberAck: true})
	default:
		t.Fatalf("unknown case %s", name)
	}
	fmt.Printf("RESULT rate=%f rss=%d\n", float64(n)/elapsed.Seconds(), peakRSS(t))
}

// peakRSS is the process's high-water resident set (VmHWM), in bytes.
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// runBareChan is the ceiling: the producer encodes each event once and
// sends the bytes on one buffered channel per handler; each handler
// goroutine decodes.
func runBareChan(n, handlers int) time.Duration {
	chans := make([]chan []byte, handlers)
	var wg sync.WaitGroup
	for i := range chans {
		chans[i] = make(chan []byte, 1024)
		wg.Go(func() {
			for p := range chans[i] {
				var e benchEvent
				if err := json.Unmarshal(p, &e); err != nil {
					panic(err)
				}
			}
		})
	}
	start := time.Now()
	for i := range n {
		p, err := json.Marshal(newBenchEvent(i))
		if err != nil {
			panic(err)
		}
		for _, c := range chans {
			c <- p
		}
	}
	for _, c := range chans {
		close(c)
	}
	wg.Wait()
	return time.Since(start)
}

// runMartyMemory runs the memory bus in a real fx app with default config:
// 1024-slot queue and 4 workers per handler, wait on a full queue.
func runMartyMemory(t *testing.T, n, handlers int) time.Duration {
	var handled atomic.Int64
	done := make(chan struct{})
	target := int64(n * handlers)
	opts := []fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module}
	src, err := fxcore.NewSourceFrom("", append([]string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=bench"}, os.Getenv("BENCH_EVENTS_ENV")))
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, fx.Replace(src))
	for h := range handlers {
		opts = append(opts, fxevents.AsHandler(fxevents.HandlerFunc(fmt.Sprint("h", h), func(_ context.Context, e benchEvent) error {
			if handled.Add(1) == target {
				close(done)
			}
			return nil
		})))
	}
	var bus fxevents.Bus
	app := fx.New(append(opts, fx.Populate(&bus))...)
	if err := app.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	for i := range n {
		if err := bus.Publish(ctx, newBenchEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	if err := app.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	return elapsed
}

// runWatermill publishes to watermill's GoChannel with one subscription per
// handler; each subscriber decodes and acks.
func runWatermill(t *testing.T, n, handlers int, cfg gochannel.Config) time.Duration {
	ps := gochannel.NewGoChannel(cfg, watermill.NopLogger{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	done := make(chan struct{})
	target := int64(n * handlers)
	for range handlers {
		msgs, err := ps.Subscribe(ctx, "bench.order_placed")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for m := range msgs {
				var e benchEvent
				if err := json.Unmarshal(m.Payload, &e); err != nil {
					panic(err)
				}
				m.Ack()
				if handled.Add(1) == target {
					close(done)
				}
			}
		}()
	}
	start := time.Now()
	for i := range n {
		p, err := json.Marshal(newBenchEvent(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := ps.Publish("bench.order_placed", message.NewMessage(watermill.NewUUID(), p)); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	_ = ps.Close()
	return elapsed
}

// rawEvent is a pre-encoded event for BenchmarkBusEvent's "raw" cases: its
// codec (rawCodec) neither encodes nor decodes, so what is counted is the
// bus's own work per event.
type rawEvent struct{ payload []byte }

func (*rawEvent) EventType() string { return "bench.raw" }

type rawCodec struct{}

func (rawCodec) Encode(ev fxevents.Event) (string, []byte, error) {
	return fxevents.ContentTypeJSON, ev.(*rawEvent).payload, nil
}
func (rawCodec) Decode(string, []byte, any) error { return nil }

// rawHandler counts the raw events, with no decoding (a HandlerFunc of a
// pointer type allocates the value it decodes into).
type rawHandler struct{ n *atomic.Int64 }

func (rawHandler) Name() string         { return "h" }
func (rawHandler) EventTypes() []string { return []string{"bench.raw"} }
func (h rawHandler) Handle(context.Context, fxevents.Envelope) error {
	h.n.Add(1)
	return nil
}

// BenchmarkBusEvent is the per-event cost of Publish → handled with one
// handler, in process (no subprocess), with allocations: ns/op and
// allocs/op are per event, from the first Publish to the last event handled
// (the handler goroutines' allocations included). Run with -benchmem
// (go test -run '^$' -bench BenchmarkBusEvent -benchmem -count 5 .).
//
//   - bare-chan: json.Marshal, a send on a 1024-slot channel, one goroutine
//     that decodes (BenchmarkEvents' ceiling).
//   - martyfx-memory: the memory bus in an fx app, default config, a
//     HandlerFunc decoding the same ~100-byte JSON event.
//   - bare-chan-raw / martyfx-memory-raw: the same with a pre-encoded
//     payload and no decoding, which leaves the channel's and the bus's own
//     work: the bus's allocs/op here is its allocations per event.
func BenchmarkBusEvent(b *testing.B) {
	raw, err := json.Marshal(newBenchEvent(1))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("bare-chan", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan []byte, 1024)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for p := range ch {
				var e benchEvent
				if err := json.Unmarshal(p, &e); err != nil {
					panic(err)
				}
			}
		}()
		for i := 0; b.Loop(); i++ {
			p, err := json.Marshal(newBenchEvent(i))
			if err != nil {
				b.Fatal(err)
			}
			ch <- p
		}
		close(ch)
		<-done
	})
	b.Run("bare-chan-raw", func(b *testing.B) {
		b.ReportAllocs()
		ch := make(chan []byte, 1024)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for p := range ch {
				_ = p
			}
		}()
		for b.Loop() {
			ch <- raw
		}
		close(ch)
		<-done
	})
	b.Run("martyfx-memory", func(b *testing.B) {
		b.ReportAllocs()
		var handled atomic.Int64
		bus, stop := busEventApp(b, fxevents.HandlerFunc("h", func(_ context.Context, _ benchEvent) error {
			handled.Add(1)
			return nil
		}))
		ctx := context.Background()
		n := int64(0)
		for i := 0; b.Loop(); i++ {
			if err := bus.Publish(ctx, newBenchEvent(i)); err != nil {
				b.Fatal(err)
			}
			n++
		}
		for handled.Load() < n {
			runtime.Gosched()
		}
		b.StopTimer()
		stop()
	})
	b.Run("martyfx-memory-raw", func(b *testing.B) {
		b.ReportAllocs()
		var handled atomic.Int64
		bus, stop := busEventApp(b, rawHandler{&handled}, fx.Decorate(func() fxevents.Codec { return rawCodec{} }))
		ctx := context.Background()
		evs := []fxevents.Event{&rawEvent{payload: raw}}
		n := int64(0)
		for b.Loop() {
			if err := bus.Publish(ctx, evs...); err != nil {
				b.Fatal(err)
			}
			n++
		}
		for handled.Load() < n {
			runtime.Gosched()
		}
		b.StopTimer()
		stop()
	})
}

// busEventApp starts fxcore + fxevents (memory bus, default config) with h.
func busEventApp(b *testing.B, h fxevents.Handler, extra ...fx.Option) (fxevents.Bus, func()) {
	src, err := fxcore.NewSourceFrom("", []string{"MARTY_LOG_LEVEL=error", "MARTY_SERVICE_NAME=bench"})
	if err != nil {
		b.Fatal(err)
	}
	var bus fxevents.Bus
	opts := append([]fx.Option{fx.NopLogger, fxcore.Module, fxevents.Module, fx.Replace(src), fxevents.AsHandler(h), fx.Populate(&bus)}, extra...)
	app := fx.New(opts...)
	if err := app.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return bus, func() {
		if err := app.Stop(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
