package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	ordersv1 "github.com/martyfx/martyfx/example/gen/orders/v1"
)

// outcome is what a client saw of one create.
type outcome int

const (
	okResult     outcome = iota // 200 / OK
	answeredFail                // the server answered with an error (HTTP non-200, gRPC status it sent)
	refusedConn                 // no connection: the listener was closed (not accepted)
	noAnswer                    // a transport error after connecting, no answer
)

type call struct {
	customer string
	rest     bool
	sentAt   time.Time
	result   outcome
	detail   string
}

// TestSIGTERMUnderLoadFailsNoAcceptedRequest runs the orders binary with
// drain delays of 2s on both servers, keeps REST (through the gateway) and
// gRPC creates going from several workers, sends SIGTERM and keeps the load
// until the process has exited. Every request the server accepted
// completes: no HTTP error status, no gRPC error from the server, no order
// stored whose client saw a failure; requests that found the listeners
// closed are not accepted and are fine. The process exits 0 after one
// drain delay.
func TestSIGTERMUnderLoadFailsNoAcceptedRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end stop test")
	}
	bin := t.TempDir()
	build(t, bin, "orders")
	data := t.TempDir()
	env := []string{
		"MARTY_DB_DSN=" + filepath.Join(data, "orders.db"),
		"MARTY_HTTP_DRAIN_DELAY=2s", "MARTY_GRPC_DRAIN_DELAY=2s",
		"MARTY_LOG_FORMAT=json",
	}
	p := start(t, filepath.Join(bin, "orders"), "orders-stop", env)
	waitReady(t, p)

	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	rpc := ordersv1.NewOrderServiceClient(conn)
	const workers = 16 // half REST, half gRPC
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 20 * time.Second}

	var (
		mu       sync.Mutex
		calls    []call
		seq      atomic.Int64
		wg       sync.WaitGroup
		loadTime = time.Second // of load before SIGTERM
	)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for w := range workers {
		rest := w%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				select {
				case <-p.done:
					return // exited: every later request is refused
				default:
				}
				c := call{customer: fmt.Sprintf("w%d-%d", w, seq.Add(1)), rest: rest, sentAt: time.Now()}
				if rest {
					c.result, c.detail = createOverREST(ctx, hc, p.http, c.customer)
				} else {
					c.result, c.detail = createOverGRPC(ctx, rpc, c.customer)
				}
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
				if c.result != okResult {
					time.Sleep(5 * time.Millisecond) // no busy loop on a closed port
				}
			}
		}()
	}
	time.Sleep(loadTime)
	sigterm := time.Now()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("orders did not exit within 30s of SIGTERM")
	}
	exited := time.Since(sigterm)
	wg.Wait()

	// What the database holds: every order the server committed.
	stored := storedCustomers(t, filepath.Join(bin, "orders"), env)

	// Count.
	var sent, ok, failed, refused, dropped, acceptedFailed, lost int
	perKind := map[string]int{}
	var failures []string
	for _, c := range calls {
		sent++
		kind := "grpc"
		if c.rest {
			kind = "rest"
		}
		perKind[kind]++
		_, isStored := stored[c.customer]
		switch c.result {
		case okResult:
			ok++
			if !isStored {
				lost++
				failures = append(failures, fmt.Sprintf("%s %s: answered OK but not stored", kind, c.customer))
			}
		case answeredFail:
			failed++
			failures = append(failures, fmt.Sprintf("%s %s at SIGTERM%+v: %s", kind, c.customer, c.sentAt.Sub(sigterm).Round(time.Millisecond), c.detail))
		case refusedConn, noAnswer:
			if c.result == refusedConn {
				refused++
			} else {
				dropped++
				t.Logf("%s %s at SIGTERM%+v: no answer (not stored: %v): %s", kind, c.customer, c.sentAt.Sub(sigterm).Round(time.Millisecond), !isStored, c.detail)
			}
			if isStored {
				acceptedFailed++
				failures = append(failures, fmt.Sprintf("%s %s at SIGTERM%+v: stored, but the client saw %s", kind, c.customer, c.sentAt.Sub(sigterm).Round(time.Millisecond), c.detail))
			}
		}
	}
	accepted := ok + failed + acceptedFailed
	logs := parseLogs(p)
	serverFailed := 0
	for _, l := range logs {
		if l["msg"] == "grpc call" { // only calls that did not end OK are logged here
			serverFailed++
			failures = append(failures, fmt.Sprintf("server: grpc call %v ended %v", l["grpc.method"], l["grpc.code"]))
		}
	}
	var stopSeq map[string]any
	drains := 0
	for _, l := range logs {
		switch {
		case strings.HasPrefix(fmt.Sprint(l["msg"]), "stop sequence finished"):
			stopSeq = l
		case strings.Contains(fmt.Sprint(l["msg"]), "waiting the drain delay"):
			drains++
		}
	}
	t.Logf("requests sent %d (%v), accepted %d, succeeded %d, failed among accepted %d (HTTP/gRPC error answers %d, stored but failed %d, server-logged gRPC failures %d); not accepted: refused %d, dropped before an answer %d",
		sent, perKind, accepted, ok, failed+acceptedFailed+serverFailed, failed, acceptedFailed, serverFailed, refused, dropped)
	t.Logf("stop: SIGTERM to exit %v; the server's stop sequence %vs (drain %vs, then stages %v taking %vs)",
		exited.Round(time.Millisecond), stopSeq["duration"], stopSeq["drain_delay"], stopSeq["stages"], stopSeq["stage_durations"])
	if len(failures) > 10 {
		failures = append(failures[:10], fmt.Sprintf("... and %d more", len(failures)-10))
	}

	require.NoError(t, p.exitErr, "orders exits 0 after SIGTERM")
	require.Zero(t, lost, "answered OK but not stored")
	require.Zero(t, failed+acceptedFailed+serverFailed, "accepted requests that failed:\n%s", strings.Join(failures, "\n"))
	require.Positive(t, ok)
	require.Positive(t, refused, "the load went on until the listeners refused")
	require.Equal(t, 1, drains, "the drain delay is waited once")
	require.NotNil(t, stopSeq, "the stop sequence logged its end")
	require.Equal(t, []any{"http api", "grpc", "http admin"}, stopSeq["stages"])
}

func createOverREST(ctx context.Context, hc *http.Client, addr, customer string) (outcome, string) {
	body := fmt.Sprintf(`{"customerId":%q,"items":[{"sku":"book","quantity":1,"unitPriceCents":1250}]}`, customer)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/orders", strings.NewReader(body))
	if err != nil {
		return noAnswer, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return refusedConn, err.Error()
		}
		return noAnswer, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return answeredFail, fmt.Sprintf("HTTP %d %s", resp.StatusCode, b)
	}
	if err != nil {
		return noAnswer, "reading the body: " + err.Error()
	}
	return okResult, ""
}

func createOverGRPC(ctx context.Context, rpc ordersv1.OrderServiceClient, customer string) (outcome, string) {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := rpc.CreateOrder(cctx, &ordersv1.CreateOrderRequest{
		CustomerId: customer, Items: []*ordersv1.LineItem{{Sku: "pen", Quantity: 2, UnitPriceCents: 199}},
	})
	if err == nil {
		return okResult, ""
	}
	// UNAVAILABLE is what a client gets when it cannot reach the server
	// (the listener is closed); whether the server had the call is told by
	// the database and the server's log of failed calls. Any other code is
	// an answer from the server.
	if status.Code(err) == codes.Unavailable {
		return refusedConn, err.Error()
	}
	return answeredFail, err.Error()
}

// storedCustomers restarts orders on the same database and lists every
// order's customer id.
func storedCustomers(t *testing.T, bin string, env []string) map[string]bool {
	t.Helper()
	p := start(t, bin, "orders-check", env)
	waitReady(t, p)
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	rpc := ordersv1.NewOrderServiceClient(conn)
	out := map[string]bool{}
	token := ""
	for {
		resp, err := rpc.ListOrders(t.Context(), &ordersv1.ListOrdersRequest{PageSize: 100, PageToken: token})
		require.NoError(t, err)
		for _, o := range resp.GetOrders() {
			require.False(t, out[o.GetCustomerId()], "customer %s stored twice", o.GetCustomerId())
			out[o.GetCustomerId()] = true
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	<-p.done
	return out
}

// parseLogs returns the process's JSON log lines.
func parseLogs(p *proc) []map[string]any {
	<-p.done
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.log.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
