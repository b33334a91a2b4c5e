package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
	"github.com/martyfx/martyfx/internal/nettest"
	"github.com/martyfx/martyfx/internal/pgtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	totalOrders = 200
	workers     = 8
)

// proc is one service process.
type proc struct {
	name              string
	cmd               *exec.Cmd
	http, admin, grpc string
	log               *bytes.Buffer
	done              chan struct{}
	exitErr           error
}

func build(t *testing.T, dir string, names ...string) {
	t.Helper()
	args := []string{"build", "-o", dir + string(os.PathSeparator)}
	for _, n := range names {
		args = append(args, "github.com/martyfx/martyfx/example/"+n)
	}
	cmd := exec.Command("go", args...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
}

func start(t *testing.T, bin, name string, env []string) *proc {
	t.Helper()
	p := &proc{name: name, http: nettest.FreeAddr(t), admin: nettest.FreeAddr(t), grpc: nettest.FreeAddr(t), log: &bytes.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"MARTY_HTTP_ADDR=" + p.http, "MARTY_HTTP_ADMIN_ADDR=" + p.admin, "MARTY_GRPC_ADDR=" + p.grpc,
		"MARTY_SERVICE_NAME=" + strings.SplitN(name, "-", 2)[0],
		"MARTY_STOP_TIMEOUT=20s",
		// Readiness goes 503 a second before the listeners close.
		"MARTY_HTTP_DRAIN_DELAY=1s", "MARTY_GRPC_DRAIN_DELAY=1s",
		"MARTY_HTTP_ACCESS_LOG=off", "MARTY_GRPC_LOG_OK_LEVEL=off",
	}, env...)
	buf := &lockedWriter{w: p.log}
	p.cmd.Stdout, p.cmd.Stderr = buf, buf
	require.NoError(t, p.cmd.Start(), name)
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(25 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			buf.mu.Lock()
			t.Logf("---- %s output (last 6000 bytes) ----\n%s", name, tail(p.log.String(), 6000))
			buf.mu.Unlock()
		}
	})
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(url string) (int, []byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func waitReady(t *testing.T, p *proc) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready: %v", p.name, p.exitErr)
		default:
		}
		if code, _, err := get("http://" + p.admin + "/readyz"); err == nil && code == http.StatusOK {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within 40s", p.name)
}

// replica is an orders replica as the load sees it: routed to while its
// readiness (polled, like an endpoints controller) says so.
type replica struct {
	p     *proc
	conn  *grpc.ClientConn
	rpc   ordersv1.OrderServiceClient
	ready atomic.Bool
}

// stopWatch records, while a replica stops, when /readyz first answered 503
// and when its public ports first refused connections.
type stopWatch struct {
	saw503, closed time.Time
}

func watchStop(ctx context.Context, r *replica) *stopWatch {
	w := &stopWatch{}
	for ctx.Err() == nil {
		code, _, err := get("http://" + r.p.admin + "/readyz")
		now := time.Now()
		if err == nil && code == http.StatusServiceUnavailable {
			r.ready.Store(false)
			if w.saw503.IsZero() {
				w.saw503 = now
			}
		}
		for _, addr := range []string{r.p.http, r.p.grpc} {
			c, derr := net.DialTimeout("tcp", addr, time.Second)
			if derr != nil {
				r.ready.Store(false)
				if w.closed.IsZero() {
					w.closed = now
				}
				return w
			}
			_ = c.Close()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return w
}

func createREST(ctx context.Context, r *replica, customer string) (string, error) {
	body := fmt.Sprintf(`{"customerId":%q,"items":[{"sku":"book","quantity":1,"unitPriceCents":1250}]}`, customer)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+r.p.http+"/v1/orders", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("REST %s: %w", r.p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("REST %s: status %d: %s", r.p.name, resp.StatusCode, b)
	}
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return "", fmt.Errorf("REST %s: bad body %s: %w", r.p.name, b, err)
	}
	if out.ID == "" {
		return "", fmt.Errorf("REST %s: no id in the body %s", r.p.name, b)
	}
	return out.ID, nil
}

func createGRPC(ctx context.Context, r *replica, customer string) (string, error) {
	o, err := r.rpc.CreateOrder(ctx, &ordersv1.CreateOrderRequest{
		CustomerId: customer, Items: []*ordersv1.LineItem{{Sku: "pen", Quantity: 2, UnitPriceCents: 199}},
	})
	if err != nil {
		return "", fmt.Errorf("gRPC %s: %w", r.p.name, err)
	}
	return o.GetId(), nil
}

func TestDistributed(t *testing.T) {
	natsURL := os.Getenv("MARTY_TEST_NATS_URL")
	if natsURL == "" {
		t.Skip("MARTY_TEST_NATS_URL is not set: skipping the end-to-end test (set it to e.g. nats://127.0.0.1:4222, with MARTY_TEST_POSTGRES_DSN)")
	}
	ordersDSN := pgtest.NewDatabase(t) // skips without MARTY_TEST_POSTGRES_DSN
	notifierDSN := pgtest.NewDatabase(t)
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end test")
	}

	bin := t.TempDir()
	build(t, bin, "orders", "notifier")
	recv, otlpURL := startReceiver(t)

	// A stream and subjects of this run only, so runs never see each other.
	run := fmt.Sprintf("e2e%d", time.Now().UnixNano())
	common := []string{
		"MARTY_DB_DRIVER=postgres",
		"MARTY_NATS_URL=" + natsURL,
		"MARTY_NATS_STREAM=" + strings.ToUpper(run), "MARTY_NATS_SUBJECT_PREFIX=" + run,
		"MARTY_NATS_STORAGE=memory",
		"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlpURL, "OTEL_BSP_SCHEDULE_DELAY=200",
		"OTEL_TRACES_SAMPLER=always_on",
	}
	ordersEnv := append([]string{"MARTY_DB_DSN=" + ordersDSN, "MARTY_EVENTS_BUS=outbox"}, common...)
	notifierEnv := append([]string{"MARTY_DB_DSN=" + notifierDSN}, common...)

	a := start(t, filepath.Join(bin, "orders"), "orders-a", ordersEnv)
	b := start(t, filepath.Join(bin, "orders"), "orders-b", ordersEnv)
	n := start(t, filepath.Join(bin, "notifier"), "notifier", notifierEnv)
	for _, p := range []*proc{a, b, n} {
		waitReady(t, p)
	}

	var replicas []*replica
	for _, p := range []*proc{a, b} {
		conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		r := &replica{p: p, conn: conn, rpc: ordersv1.NewOrderServiceClient(conn)}
		r.ready.Store(true)
		replicas = append(replicas, r)
	}
	ra, rb := replicas[0], replicas[1]

	// Load: totalOrders creates from 8 workers, alternating gRPC and REST
	// and the ready replicas. Once a third is done, replica B gets SIGTERM.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var (
		mu       sync.Mutex
		ids      = map[string]string{} // order id -> how it was created
		failures []error
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	stopAt := int64(totalOrders / 3)
	stopped := make(chan struct{})
	var stopOnce sync.Once
	var sw *stopWatch
	swDone := make(chan struct{})
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > totalOrders || ctx.Err() != nil {
					return
				}
				if i == stopAt {
					stopOnce.Do(func() {
						go func() {
							defer close(swDone)
							sw = watchStop(ctx, rb)
						}()
						if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
							t.Errorf("SIGTERM replica b: %v", err)
						}
						close(stopped)
					})
				}
				r := ra
				if i%2 == 0 && rb.ready.Load() {
					r = rb
				}
				customer := fmt.Sprintf("c-%d", w)
				var id, how string
				var err error
				if i%4 < 2 {
					how = "grpc"
					id, err = createGRPC(ctx, r, customer)
				} else {
					how = "rest"
					id, err = createREST(ctx, r, customer)
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					ids[id] = how + " via " + r.p.name
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	<-stopped
	select {
	case <-b.done:
	case <-time.After(25 * time.Second):
		t.Fatal("replica b did not exit within 25s of SIGTERM")
	}
	<-swDone
	require.NoError(t, b.exitErr, "replica b exits 0 after SIGTERM")
	require.Empty(t, failures, "requests failed")
	require.Len(t, ids, totalOrders)
	served := map[string]int{}
	for _, how := range ids {
		served[how]++
	}
	t.Logf("orders created: %v", served)
	require.Positive(t, served["grpc via orders-b"]+served["rest via orders-b"], "replica b served part of the load")

	// Readiness went 503 before the ports closed.
	require.False(t, sw.saw503.IsZero(), "never saw /readyz 503 on the stopping replica")
	require.False(t, sw.closed.IsZero(), "the stopping replica's ports never closed")
	require.True(t, sw.saw503.Before(sw.closed), "503 at %v, ports closed at %v", sw.saw503, sw.closed)
	t.Logf("replica b: /readyz 503 %v before its ports closed", sw.closed.Sub(sw.saw503))

	// Every order is stored once, on the shared database.
	stored := 0
	token := ""
	for {
		resp, err := ra.rpc.ListOrders(t.Context(), &ordersv1.ListOrdersRequest{PageSize: 100, PageToken: token})
		require.NoError(t, err)
		for _, o := range resp.GetOrders() {
			require.Contains(t, ids, o.GetId())
			stored++
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Equal(t, totalOrders, stored)

	// Every order has exactly one notification, through outbox → NATS →
	// notifier (replica B's outbox rows are relayed by A if B left any).
	var perOrder map[string]int
	require.Eventually(t, func() bool {
		perOrder = notifications(t, n)
		return len(perOrder) >= totalOrders
	}, 30*time.Second, 200*time.Millisecond, "notifications: %d of %d orders", len(perOrder), totalOrders)
	time.Sleep(500 * time.Millisecond) // let any duplicate arrive before counting
	perOrder = notifications(t, n)
	for id := range ids {
		require.Equal(t, 1, perOrder[id], "notifications of order %s (%s)", id, ids[id])
	}
	require.Len(t, perOrder, totalOrders)

	// Stop the rest so their spans are flushed, then find one trace that
	// goes orders (server) → publish → [outbox relay → NATS] → notifier.
	for _, p := range []*proc{a, n} {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	}
	for _, p := range []*proc{a, n} {
		select {
		case <-p.done:
			require.NoError(t, p.exitErr, p.name)
		case <-time.After(25 * time.Second):
			t.Fatalf("%s did not exit within 25s of SIGTERM", p.name)
		}
	}
	requireTrace(t, recv.all())
}

// notifications returns the notifier's count of OrderCreated notifications
// per order.
func notifications(t *testing.T, n *proc) map[string]int {
	t.Helper()
	out := map[string]int{}
	token := ""
	for {
		url := "http://" + n.http + "/v1/notifications?page_size=500"
		if token != "" {
			url += "&page_token=" + token
		}
		code, body, err := get(url)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var resp struct {
			Notifications []struct {
				OrderID   string `json:"order_id"`
				EventType string `json:"event_type"`
			} `json:"notifications"`
			Next string `json:"next_page_token"`
		}
		require.NoError(t, json.Unmarshal(body, &resp))
		for _, x := range resp.Notifications {
			if x.EventType == "orders.order_created" {
				out[x.OrderID]++
			}
		}
		if token = resp.Next; token == "" {
			return out
		}
	}
}

func requireTrace(t *testing.T, spans []span) {
	t.Helper()
	byID := map[string]span{}
	for _, s := range spans {
		byID[s.ID] = s
	}
	linked := map[string]bool{} // publish spans a relay span links to
	for _, s := range spans {
		if s.Service == "orders" && s.Name == "relay marty_outbox" {
			for _, l := range s.Links {
				linked[l] = true
			}
		}
	}
	for _, s := range spans {
		if s.Service != "notifier" || s.Name != "process orders.order_created" {
			continue
		}
		pub, ok := byID[s.ParentID]
		if !ok || pub.Service != "orders" || pub.Name != "publish orders.order_created" || !linked[pub.ID] {
			continue
		}
		// Walk up from the publish span to the orders server span.
		root := pub
		for root.ParentID != "" {
			p, ok := byID[root.ParentID]
			if !ok {
				break
			}
			root = p
		}
		if root.Service == "orders" && root.TraceID == s.TraceID && root.ID != pub.ID &&
			(strings.Contains(root.Name, "OrderService/CreateOrder") || strings.Contains(root.Name, "/v1/orders")) {
			t.Logf("trace %s: %s → %s → relay (link) → NATS → %s", s.TraceID, root.Name, pub.Name, s.Name)
			return
		}
	}
	names := map[string]int{}
	for _, s := range spans {
		names[s.Service+": "+s.Name]++
	}
	t.Fatalf("no trace orders → outbox → NATS → notifier among %d spans: %v", len(spans), names)
}
