package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/example/events"
	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/example/orders/service"
	"github.com/martyfx/martyfx/fxevents"
	"github.com/martyfx/martyfx/fxhttp"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

// internals are texts that must never reach a client: driver messages,
// the database's user, name and address.
func requireNoInternals(t *testing.T, text string, dbName string) {
	t.Helper()
	for _, s := range []string{"SQLSTATE 42", "invalid byte sequence", "UTF8", "user=", "database=", "127.0.0.1", "postgres", dbName, "failed to connect"} {
		require.NotContains(t, text, s)
	}
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

// A NUL byte in a string field is the client's mistake: 400 and
// INVALID_ARGUMENT with the reason, no driver text.
func TestNULByteIsInvalidArgument(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	app := fxtest.New(t, service.Module, fxtest.Env("MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+dsn))

	req := book(1)
	req.CustomerId = "ali\x00ce"
	_, err := ordersv1.NewOrderServiceClient(app.GRPC()).CreateOrder(t.Context(), req)
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "SQLSTATE 22021")
	require.Contains(t, st.Message(), "NUL byte")
	requireNoInternals(t, st.Message(), dbName(t, dsn))

	var body string
	code := app.HTTP().Do(http.MethodPost, "/v1/orders",
		json.RawMessage(`{"customerId":"ali\u0000ce","items":[{"sku":"mug","quantity":1,"unitPriceCents":800}]}`), &body)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "SQLSTATE 22021")
	requireNoInternals(t, body, dbName(t, dsn))

	var n int64
	require.NoError(t, app.DB().Raw("SELECT COUNT(*) FROM orders").Scan(&n).Error)
	require.Zero(t, n)
}

// A unique violation in a hand-written route answers 409 through
// fxhttp.WriteError, with the entity and no driver text.
func TestUniqueViolationIsConflict(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	app := fxtest.New(t, service.Module, fxtest.Env("MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+dsn),
		fxhttp.AsRoute("POST /test/orders/{id}", func(db *gorm.DB) http.Handler {
			orders := fxrepo.NewRepository[service.Order, string](db)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				now := time.Now()
				o := &service.Order{ID: r.PathValue("id"), CustomerID: "c", Items: []service.Item{}, Status: service.StatusPending, CreatedAt: now, UpdatedAt: now}
				if err := orders.Create(r.Context(), o); err != nil {
					fxhttp.WriteError(w, r, err)
					return
				}
				w.WriteHeader(http.StatusCreated)
			})
		}))
	var body string
	require.Equal(t, http.StatusCreated, app.HTTP().Do(http.MethodPost, "/test/orders/o-1", nil, &body), body)
	require.Equal(t, http.StatusConflict, app.HTTP().Do(http.MethodPost, "/test/orders/o-1", nil, &body), body)
	require.Contains(t, body, "Order o-1 already exists")
	requireNoInternals(t, body, dbName(t, dsn))
	require.NotContains(t, body, "orders_pkey")
}

// An unclassified error reaches the client as "internal error (ref <id>)";
// the log line with that reference has the full error and the trace id.
func TestInternalErrorHasAReferenceToTheLog(t *testing.T) {
	refuse := fxevents.HandlerFunc("refuse", func(context.Context, events.OrderCreated) error {
		return errors.New("notifier at 10.0.0.9 refused the event")
	})
	app := fxtest.New(t, service.Module, fxevents.AsHandler(refuse), fxtest.Env("MARTY_EVENTS_MAX_ATTEMPTS=1"))
	_, err := ordersv1.NewOrderServiceClient(app.GRPC()).CreateOrder(t.Context(), book(1))
	st := status.Convert(err)
	require.Equal(t, codes.Internal, st.Code())
	require.NotContains(t, st.Message(), "10.0.0.9")
	ref, ok := strings.CutPrefix(st.Message(), "internal error (ref ")
	require.True(t, ok, st.Message())
	ref = strings.TrimSuffix(ref, ")")

	var found bool
	for _, e := range app.Logs().FilterMessage("grpc internal error").All() {
		f := e.ContextMap()
		if f["ref"] != ref {
			continue
		}
		found = true
		require.Contains(t, f["error"], "notifier at 10.0.0.9 refused the event")
		require.Contains(t, f["error"], "orders: create order")
		require.Len(t, f["trace_id"], 32)
	}
	require.True(t, found, "no log line has the reference %s", ref)
}

// terminateBackends ends every session on the test database but its own,
// as a failover does, and waits until they are gone.
func terminateBackends(t *testing.T, dsn string) {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer func() { _ = c.Close(ctx) }()
	var n int
	require.NoError(t, c.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n))
	require.Positive(t, n, "the app had connections")
	require.Eventually(t, func() bool {
		var left int
		require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left))
		return left == 0
	}, 10*time.Second, 5*time.Millisecond)
}

// The first requests after every backend of the app was terminated
// succeed: 20 requests over gRPC and REST, reads and units of work, and no
// 5xx.
func TestFirstRequestsAfterDatabaseBlip(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	app := fxtest.New(t, service.Module, fxtest.Env("MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+dsn))
	c := ordersv1.NewOrderServiceClient(app.GRPC())
	h := app.HTTP()
	ctx := t.Context()

	// Fill the pool: concurrent requests, each connection used recently.
	var ids []string
	var mu sync.Mutex
	for range 2 {
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				o, err := c.CreateOrder(ctx, book(1))
				require.NoError(t, err)
				_, err = c.ListOrders(ctx, &ordersv1.ListOrdersRequest{})
				require.NoError(t, err)
				mu.Lock()
				ids = append(ids, o.GetId())
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	terminateBackends(t, dsn)

	var failures []string
	for i := range 20 {
		id := ids[i%len(ids)]
		switch i % 5 {
		case 0:
			_, err := c.GetOrder(ctx, &ordersv1.GetOrderRequest{Id: id})
			if err != nil {
				failures = append(failures, err.Error())
			}
		case 1:
			_, err := c.CreateOrder(ctx, book(2))
			if err != nil {
				failures = append(failures, err.Error())
			}
		case 2:
			var body string
			if code := h.Get("/v1/orders/"+id, &body); code >= 500 {
				failures = append(failures, body)
			}
		case 3:
			var body string
			if code := h.Do(http.MethodPost, "/v1/orders/"+id+":cancel", json.RawMessage(`{}`), &body); code >= 500 {
				failures = append(failures, body)
			}
		case 4:
			var body string
			if code := h.Get("/v1/summary", &body); code >= 500 {
				failures = append(failures, body)
			}
		}
	}
	require.Empty(t, failures, "no request fails after the blip")
}

// proxy forwards TCP connections to PostgreSQL until it is closed; then
// the address refuses connections, as a database that went down.
type proxy struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{l: l}
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(up, c); _ = up.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, up); _ = c.Close() })
		}
	})
	t.Cleanup(p.close)
	return p
}

func (p *proxy) close() {
	_ = p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// A database that is down answers UNAVAILABLE / 503 with Retry-After and
// says nothing about where the database is.
func TestDatabaseDownIsUnavailable(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	u, err := url.Parse(dsn)
	require.NoError(t, err)
	p := newProxy(t, u.Host)
	u.Host = p.l.Addr().String()
	app := fxtest.New(t, service.Module, fxtest.Env("MARTY_DB_DRIVER=postgres", "MARTY_DB_DSN="+u.String()))
	// A plain connection: the harness's client retries UNAVAILABLE itself.
	conn, err := grpc.NewClient(app.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { require.NoError(t, conn.Close()) }()
	c := ordersv1.NewOrderServiceClient(conn)
	o, err := c.CreateOrder(t.Context(), book(1))
	require.NoError(t, err)

	p.close()
	_, err = c.GetOrder(t.Context(), &ordersv1.GetOrderRequest{Id: o.GetId()})
	st := status.Convert(err)
	require.Equal(t, codes.Unavailable, st.Code(), "%v", err)
	require.Equal(t, fxrepo.MessageUnavailable, st.Message())
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry)
	_, err = c.CreateOrder(t.Context(), book(1))
	require.Equal(t, codes.Unavailable, status.Code(err), "the unit of work gives up after its retries: %v", err)

	for _, path := range []string{"/v1/orders/" + o.GetId(), "/v1/summary"} {
		req, err := http.NewRequest(http.MethodGet, app.HTTP().URL(path), nil)
		require.NoError(t, err)
		resp, body := app.HTTP().Send(req) //nolint:bodyclose // Send reads and closes the body
		require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s: %s", path, body)
		require.Equal(t, "1", resp.Header.Get("Retry-After"), path)
		requireNoInternals(t, string(body), dbName(t, dsn))
		require.NotContains(t, string(body), u.Host, path)
	}
}
