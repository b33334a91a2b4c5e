package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxevents/saga"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxmonitor/dashboard"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/metrictest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The events of the order saga under test. Events carry the order id as
// their aggregate, so the outbox delivers an order's events in order.

type OrderPlaced struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
}

func (OrderPlaced) EventType() string     { return "test.order_placed" }
func (e OrderPlaced) AggregateID() string { return e.OrderID }

type PaymentReserved struct {
	OrderID string `json:"order_id"`
}

func (PaymentReserved) EventType() string     { return "test.payment_reserved" }
func (e PaymentReserved) AggregateID() string { return e.OrderID }

type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

func (*PaymentDeclined) EventType() string     { return "test.payment_declined" } // a pointer event
func (e *PaymentDeclined) AggregateID() string { return e.OrderID }

// command is what the saga emits; the effects handler records each.
type command struct {
	OrderID string `json:"order_id"`
	Amount  int64  `json:"amount,omitempty"`
	Type    string `json:"-"`
}

func (c command) EventType() string   { return c.Type }
func (c command) AggregateID() string { return c.OrderID }

const (
	cmdReserve = "test.reserve_payment"
	cmdConfirm = "test.confirm_order"
	cmdCancel  = "test.cancel_order"
	cmdRelease = "test.release_payment"
	cmdNotify  = "test.notify_customer"
)

func cmd(typ, order string) command { return command{Type: typ, OrderID: order} }

// OrderState is the saga's state.
type OrderState struct {
	Customer string `json:"customer"`
	Amount   int64  `json:"amount"`
	Reserved bool   `json:"reserved"`
	Steps    int    `json:"steps"`
}

// hooks let a test steer the saga's steps.
type hooks struct {
	deadline time.Duration
	// beforePlaced runs first in the OrderPlaced step.
	beforePlaced func(ctx context.Context, order string) error
	// beforeRelease runs first in the release-payment compensation.
	beforeRelease func(ctx context.Context, order string)
	// releaseFailures makes the release-payment compensation fail this many
	// times.
	mu              sync.Mutex
	releaseFailures int
}

func (h *hooks) failRelease() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.releaseFailures > 0 {
		h.releaseFailures--
		return true
	}
	return false
}

func orderID(e OrderPlaced) string { return e.OrderID }

// orderSaga: placed → reserve payment (deadline); reserved → confirm,
// complete; declined or deadline → cancel, then compensate: release the
// payment, notify the customer (reverse order of registration).
func orderSaga(h *hooks) *saga.Definition[OrderState] {
	if h.deadline == 0 {
		h.deadline = time.Hour
	}
	d := saga.New[OrderState]("order")
	saga.Start(d, orderID, func(s *saga.Step[OrderState], e OrderPlaced) error {
		if h.beforePlaced != nil {
			if err := h.beforePlaced(s.Context(), e.OrderID); err != nil {
				return err
			}
		}
		s.State.Customer, s.State.Amount = e.Customer, e.Amount
		s.State.Steps++
		if err := s.AddCompensation("notify-customer"); err != nil {
			return err
		}
		if err := s.AddCompensation("release-payment"); err != nil {
			return err
		}
		deadline := time.Hour // only silent customers' deadline is short
		if e.Customer == "silent" {
			deadline = h.deadline
		}
		if err := s.Schedule("payment-deadline", deadline); err != nil {
			return err
		}
		return s.Emit(command{Type: cmdReserve, OrderID: e.OrderID, Amount: e.Amount})
	})
	saga.On(d, func(e PaymentReserved) string { return e.OrderID }, func(s *saga.Step[OrderState], e PaymentReserved) error {
		s.State.Reserved = true
		s.State.Steps++
		s.Complete()
		return s.Emit(cmd(cmdConfirm, e.OrderID))
	})
	saga.On(d, func(e *PaymentDeclined) string { return e.OrderID }, func(s *saga.Step[OrderState], e *PaymentDeclined) error {
		s.State.Steps++
		s.Fail("payment declined: " + e.Reason)
		return s.Emit(cmd(cmdCancel, e.OrderID))
	})
	d.OnTimer("payment-deadline", func(s *saga.Step[OrderState]) error {
		s.State.Steps++
		s.Fail("no payment before the deadline")
		return s.Emit(cmd(cmdCancel, s.Key()))
	})
	d.Compensation("release-payment", func(s *saga.Step[OrderState]) error {
		if h.beforeRelease != nil {
			h.beforeRelease(s.Context(), s.Key())
		}
		if h.failRelease() {
			return errors.New("payment provider unavailable")
		}
		return s.Emit(cmd(cmdRelease, s.Key()))
	})
	d.Compensation("notify-customer", func(s *saga.Step[OrderState]) error {
		return s.Emit(cmd(cmdNotify, s.Key()))
	})
	return d
}

// paymentsHandler is the fake payment service: customers named "decline"
// are declined, "silent" never get an answer, others are reserved.
type paymentsHandler struct{ ref *busRef }

// busRef is the bus, set once the app is built (a handler that publishes
// cannot take the bus in its constructor: the bus needs the handlers).
type busRef struct{ fxevents.Bus }

func (paymentsHandler) Name() string         { return "payments" }
func (paymentsHandler) EventTypes() []string { return []string{cmdReserve} }
func (h paymentsHandler) Handle(ctx context.Context, env fxevents.Envelope) error {
	var c struct {
		OrderID string `json:"order_id"`
	}
	if err := fxevents.CodecFrom(ctx).Decode(env.ContentType(), env.Payload, &c); err != nil {
		return err
	}
	switch customerOf(c.OrderID) {
	case "decline":
		return h.ref.Publish(ctx, &PaymentDeclined{OrderID: c.OrderID, Reason: "card refused"})
	case "silent":
		return nil
	default:
		return h.ref.Publish(ctx, PaymentReserved{OrderID: c.OrderID})
	}
}

// customerOf reads the customer from an order id "<customer>-<n>".
func customerOf(order string) string {
	if c, _, ok := strings.Cut(order, "-"); ok {
		return c
	}
	return order
}

// effectsHandler records every command the saga emitted (one row per
// delivery: Idempotent, so a redelivery after a crash is not counted).
type effectsHandler struct{ db *gorm.DB }

func (effectsHandler) Name() string { return "effects" }
func (effectsHandler) EventTypes() []string {
	return []string{cmdReserve, cmdConfirm, cmdCancel, cmdRelease, cmdNotify}
}
func (h effectsHandler) Handle(ctx context.Context, env fxevents.Envelope) error {
	var c struct {
		OrderID string `json:"order_id"`
	}
	if err := fxevents.CodecFrom(ctx).Decode(env.ContentType(), env.Payload, &c); err != nil {
		return err
	}
	return fxrepo.DB(ctx, h.db).Exec("INSERT INTO effects (type, order_id) VALUES (?, ?)", env.Type, c.OrderID).Error
}

// testMigrations create the effects table.
var testMigrations = fstest.MapFS{
	"postgres/00001_effects.sql": {Data: []byte("-- +goose Up\nCREATE TABLE effects (id BIGSERIAL PRIMARY KEY, type TEXT NOT NULL, order_id TEXT NOT NULL);\n-- +goose Down\nDROP TABLE effects;\n")},
	"sqlite/00001_effects.sql":   {Data: []byte("-- +goose Up\nCREATE TABLE effects (id INTEGER PRIMARY KEY AUTOINCREMENT, type TEXT NOT NULL, order_id TEXT NOT NULL);\n-- +goose Down\nDROP TABLE effects;\n")},
}

// backend is a database the tests run on.
type backend struct {
	name string
	env  []string
}

func forEachDriver(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, sqliteBackend(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, pgBackend(t))
	})
}

func sqliteBackend(t *testing.T) backend {
	return backend{name: "sqlite", env: []string{"MARTY_DB_DSN=file:" + filepath.Join(t.TempDir(), "saga.db")}}
}

func pgBackend(t *testing.T) backend {
	return backend{name: "postgres", env: []string{"MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN=" + pgtest.NewDatabase(t)}}
}

// baseEnv is fast polling and short backoffs.
var baseEnv = []string{
	"MARTY_SERVICE_NAME=orders", "MARTY_LOG_LEVEL=error", "MARTY_EVENTS_BUS=outbox",
	"MARTY_EVENTS_POLL_INTERVAL=50ms", "MARTY_EVENTS_BACKOFF_INITIAL=10ms", "MARTY_EVENTS_BACKOFF_MAX=50ms",
	"MARTY_SAGA_POLL_INTERVAL=50ms", "MARTY_SAGA_BACKOFF_INITIAL=10ms", "MARTY_SAGA_BACKOFF_MAX=50ms",
}

type app struct {
	app   *fxtest.App
	db    *gorm.DB
	uow   fxrepo.UnitOfWork
	bus   fxevents.Bus
	disp  *fxevents.Dispatcher
	rt    *saga.Runtime
	reg   *prometheus.Registry
	spans *tracetest.SpanRecorder
	tp    *sdktrace.TracerProvider
	admin *httptest.Server
	panel dashboard.Panel
}

// appOptions are an app with the order saga, the payments fake and the
// effects recorder.
func appOptions(t *testing.T, a *app, env []string, def saga.Saga, opts ...fx.Option) []fx.Option {
	src, err := fxcore.NewSourceFrom("", append(append([]string{}, baseEnv...), env...))
	require.NoError(t, err)
	ref := &busRef{}
	a.spans = tracetest.NewSpanRecorder()
	a.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(a.spans))
	all := []fx.Option{
		fx.NopLogger, fxcore.Module, fxevents.Module, fxrepo.Module, saga.Module,
		fx.Replace(src),
		fx.Supply(fx.Annotate(a.tp, fx.As(new(trace.TracerProvider)))),
		fxrepo.AsMigrations("sagatest", testMigrations),
		fxevents.AsHandler(fxevents.Idempotent(paymentsHandler{ref})),
		fx.Invoke(func(b fxevents.Bus) { ref.Bus = b }),
		fxevents.AsHandler(func(db *gorm.DB) fxevents.Handler { return fxevents.Idempotent(effectsHandler{db}) }),
		fx.Populate(&a.db, &a.uow, &a.bus, &a.disp, &a.rt, &a.reg),
		fx.Invoke(fx.Annotate(func(routes []fxhttp.Route, panels []dashboard.Panel) {
			for _, p := range panels {
				if p.Name == "sagas" {
					a.panel = p
				}
			}
			mux := http.NewServeMux()
			for _, r := range routes {
				mux.Handle(r.Pattern, r.Handler)
			}
			a.admin = httptest.NewServer(mux)
			t.Cleanup(a.admin.Close)
		}, fx.ParamTags(`group:"martyfx.http.admin_routes"`, `group:"martyfx.monitor.panels"`))),
	}
	if def != nil {
		all = append(all, saga.AsSaga(def))
	}
	return append(all, opts...)
}

func newApp(t *testing.T, b backend, env []string, def saga.Saga, opts ...fx.Option) *app {
	t.Helper()
	a := &app{}
	a.app = fxtest.New(t, appOptions(t, a, append(append([]string{}, b.env...), env...), def, opts...)...)
	require.NoError(t, a.app.Err())
	a.app.RequireStart()
	t.Cleanup(func() { a.stop(t) })
	return a
}

func (a *app) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = a.app.Stop(ctx)
}

func (a *app) publish(t *testing.T, evs ...fxevents.Event) {
	t.Helper()
	require.NoError(t, a.uow.Do(context.Background(), func(ctx context.Context) error { return a.bus.Publish(ctx, evs...) }))
}

// status reads the saga's status from the table ("" when there is none),
// so it works in an app without the saga too.
func (a *app) status(t *testing.T, key string) saga.Status {
	var st []string
	require.NoError(t, a.db.Raw("SELECT status FROM marty_saga WHERE saga_type = 'order' AND saga_key = ?", key).Scan(&st).Error)
	if len(st) == 0 {
		return ""
	}
	return saga.Status(st[0])
}

func (a *app) waitStatus(t *testing.T, key string, want saga.Status) {
	t.Helper()
	require.Eventually(t, func() bool { return a.status(t, key) == want }, 20*time.Second, 5*time.Millisecond,
		"saga %s never %s (it is %q)", key, want, a.status(t, key))
}

// effects returns the command types delivered for an order, in delivery
// order.
func effects(t *testing.T, db *gorm.DB, order string) []string {
	var out []string
	require.NoError(t, db.Raw("SELECT type FROM effects WHERE order_id = ? ORDER BY id", order).Scan(&out).Error)
	return out
}

func count(t *testing.T, db *gorm.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Raw(q, args...).Scan(&n).Error)
	return n
}

func metric(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	return metrictest.Value(t, g, name, labels)
}

func steps(t *testing.T, a *app, key string) []string {
	hist, err := a.rt.History(context.Background(), "order", key)
	require.NoError(t, err)
	out := make([]string, len(hist))
	for i, h := range hist {
		out[i] = h.Step
	}
	return out
}

var _ = fmt.Sprint

func jsonDecode(resp *http.Response, v any) error { return json.NewDecoder(resp.Body).Decode(v) }

// panelRows returns the saga panel's table rows, as the dashboard gets them.
func panelRows(t *testing.T, a *app) []map[string]any {
	t.Helper()
	p := a.panel
	require.NotNil(t, p.Table)
	v, err := p.Table.Rows(context.Background())
	require.NoError(t, err)
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal(b, &rows))
	return rows
}
