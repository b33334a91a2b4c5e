package fxgrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/fx"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
	"github.com/martyfx/martyfx/fxhttp"
)

// errDriverDown stands for a database driver's error: its text must never
// reach a client.
var errDriverDown = errors.New("failed to connect to `user=app database=orders`: 10.9.8.7:5432: FATAL: the database system is shutting down")

// failWith is an interceptor that answers "err:<kind>" messages with
// errs[kind] instead of calling the handler, as a handler would return it.
func failWith(errs map[string]error) fx.Option {
	return fxgrpc.AsUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*testpb.EchoRequest); ok {
			if kind, ok := strings.CutPrefix(r.GetMessage(), "err:"); ok {
				return nil, errs[kind]
			}
		}
		return h(ctx, req)
	}, 0)
}

func TestErrorsMapToCodesWithoutInternals(t *testing.T) {
	t.Parallel()
	errs := map[string]error{
		"invalid":     fxcore.NewError(fxcore.ClassInvalid, "a value was rejected by the database (SQLSTATE 22021)", errDriverDown),
		"notfound":    fmt.Errorf("orders: get: %w", fxcore.NewError(fxcore.ClassNotFound, "Order 42 not found", errDriverDown)),
		"exists":      fxcore.NewError(fxcore.ClassAlreadyExists, "Order 42 already exists", errDriverDown),
		"aborted":     fxcore.NewError(fxcore.ClassAborted, "", errDriverDown),
		"unavailable": fmt.Errorf("orders: list: %w", errDriverDown), // the registered classifier knows it
		"precond":     fxcore.NewError(fxcore.ClassFailedPrecondition, "order 42 is cancelled", nil),
		"deadline":    fmt.Errorf("orders: %w", context.DeadlineExceeded),
		"canceled":    fmt.Errorf("pool closing: %w", context.Canceled), // the call itself was not cancelled
		"unknown":     fmt.Errorf("orders: list: %w", errors.New("10.9.8.7 said no")),
		"internal":    fxcore.NewError(fxcore.ClassInternal, "do not show", errDriverDown),
		"status":      status.Error(codes.PermissionDenied, "not your order"),
		"st-internal": status.Errorf(codes.Internal, "orders: %v", errDriverDown),
		"st-unknown":  status.Errorf(codes.Unknown, "orders: %v", errDriverDown),
		"st-unavail":  status.Error(codes.Unavailable, "orders: stopping; watch again"),
		"wrapped-st":  fmt.Errorf("payments: %w", status.Error(codes.NotFound, "no such payment")),
	}
	a := start(t, nil, failWith(errs), fxcore.AsClassifier(func(err error) (fxcore.ErrorClass, string, bool) {
		if errors.Is(err, errDriverDown) {
			return fxcore.ClassUnavailable, "the database is unavailable; retry later", true
		}
		return 0, "", false
	}))
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	for kind, want := range map[string]struct {
		code  codes.Code
		msg   string
		retry bool
	}{
		"invalid":     {codes.InvalidArgument, "a value was rejected by the database (SQLSTATE 22021)", false},
		"notfound":    {codes.NotFound, "Order 42 not found", false},
		"exists":      {codes.AlreadyExists, "Order 42 already exists", false},
		"aborted":     {codes.Aborted, fxcore.ClassAborted.Message(), false},
		"unavailable": {codes.Unavailable, "the database is unavailable; retry later", true},
		"precond":     {codes.FailedPrecondition, "order 42 is cancelled", false},
		"deadline":    {codes.DeadlineExceeded, fxcore.ClassDeadlineExceeded.Message(), false},
		"canceled":    {codes.Unavailable, fxcore.ClassUnavailable.Message(), true},
		"unknown":     {codes.Internal, "internal error (ref ", false},
		"internal":    {codes.Internal, "internal error (ref ", false},
		"status":      {codes.PermissionDenied, "not your order", false},
		"st-internal": {codes.Internal, "internal error (ref ", false},
		"st-unknown":  {codes.Unknown, "internal error (ref ", false},
		"st-unavail":  {codes.Unavailable, "orders: stopping; watch again", true},
		"wrapped-st":  {codes.NotFound, "payments: rpc error: code = NotFound desc = no such payment", false},
	} {
		_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "err:" + kind})
		st := status.Convert(err)
		require.Equal(t, want.code, st.Code(), "%s: %v", kind, err)
		require.True(t, strings.HasPrefix(st.Message(), want.msg), "%s: %q", kind, st.Message())
		for _, internal := range []string{"10.9.8.7", "user=app", "database=orders", "shutting down", "do not show"} {
			require.NotContains(t, st.Message(), internal, kind)
		}
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				retry = ri
			}
		}
		if want.retry {
			require.NotNil(t, retry, "%s: UNAVAILABLE carries RetryInfo", kind)
			require.Equal(t, time.Second, retry.GetRetryDelay().AsDuration(), kind)
		} else {
			require.Nil(t, retry, kind)
		}
	}
}

// TestInternalErrorRefIsInTheLog: the client's reference finds the log line
// with the full error, the method and the trace id.
func TestInternalErrorRefIsInTheLog(t *testing.T) {
	t.Parallel()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	a := start(t, nil,
		failWith(map[string]error{"db": fmt.Errorf("orders: list: %w", errDriverDown)}),
		fx.Provide(func() trace.TracerProvider { return tp }))
	c := testpb.NewEchoClient(dial(t, a.srv.Addr()))
	_, err := c.Echo(ctxT(t), &testpb.EchoRequest{Message: "err:db"})
	st := status.Convert(err)
	require.Equal(t, codes.Internal, st.Code(), "no classifier: unclassified")
	ref, ok := strings.CutPrefix(st.Message(), "internal error (ref ")
	require.True(t, ok, st.Message())
	ref = strings.TrimSuffix(ref, ")")

	lines := a.logs.FilterMessage("grpc internal error").All()
	require.Len(t, lines, 1)
	f := lines[0].ContextMap()
	require.Equal(t, ref, f["ref"])
	require.Equal(t, "orders: list: "+errDriverDown.Error(), f["error"])
	require.Equal(t, "/martyfx.fxgrpc.testpb.Echo/Echo", f["grpc.method"])
	require.Len(t, f["trace_id"], 32)

	// A panic's reference is in the panic's log line.
	_, err = c.Echo(ctxT(t), &testpb.EchoRequest{Message: "x", Fail: "panic"})
	st = status.Convert(err)
	require.Equal(t, codes.Internal, st.Code())
	panics := a.logs.FilterMessage("grpc handler panicked").All()
	require.Len(t, panics, 1)
	require.Equal(t, "internal error (ref "+panics[0].ContextMap()["ref"].(string)+")", st.Message())
	require.Len(t, a.logs.FilterMessage("grpc internal error").All(), 1, "the panic is logged once, with its stack")
}

func TestClassCode(t *testing.T) {
	t.Parallel()
	for c := fxcore.ClassUnknown; c <= fxcore.ClassInternal; c++ {
		code := fxgrpc.ClassCode(c)
		if c.Internal() {
			require.Equal(t, codes.Internal, code)
			continue
		}
		require.NotEqual(t, codes.Internal, code, c.String())
		require.NotEqual(t, codes.OK, code, c.String())
	}
}

// TestGatewayMapsClassesToHTTP: through the REST gateway, classified errors
// keep their code and message, UNAVAILABLE is 503 with Retry-After, and an
// internal error shows only its reference.
func TestGatewayMapsClassesToHTTP(t *testing.T) {
	t.Parallel()
	var httpSrv *fxhttp.Server
	start(t, []string{"MARTY_HTTP_ADDR=127.0.0.1:0", "MARTY_HTTP_ADMIN_ADDR=127.0.0.1:0"},
		fxhttp.Module, fxgrpc.AsGateway(registerEcho), fx.Populate(&httpSrv),
		failWith(map[string]error{
			"nul":  fxcore.NewError(fxcore.ClassInvalid, "a value was rejected by the database (SQLSTATE 22021)", errDriverDown),
			"down": fmt.Errorf("orders: %w", errDriverDown),
			"bug":  errors.New("10.9.8.7 said no"),
		}),
		fxcore.AsClassifier(func(err error) (fxcore.ErrorClass, string, bool) {
			if errors.Is(err, errDriverDown) {
				return fxcore.ClassUnavailable, "the database is unavailable; retry later", true
			}
			return 0, "", false
		}))
	type reply struct { // the answer, its body read and closed
		StatusCode int
		Header     http.Header
	}
	call := func(kind string) (reply, map[string]any, string) {
		res, err := http.Post("http://"+httpSrv.Addr()+"/v1/echo", "application/json", strings.NewReader(`{"message":"err:`+kind+`"}`))
		require.NoError(t, err)
		defer func() { _ = res.Body.Close() }()
		raw, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		var body map[string]any
		require.NoError(t, json.Unmarshal(raw, &body), string(raw))
		return reply{res.StatusCode, res.Header}, body, string(raw)
	}
	res, body, raw := call("nul")
	require.Equal(t, http.StatusBadRequest, res.StatusCode)
	require.Equal(t, "a value was rejected by the database (SQLSTATE 22021)", body["message"])
	require.NotContains(t, raw, "10.9.8.7")

	res, body, raw = call("down")
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	require.Equal(t, "1", res.Header.Get("Retry-After"))
	require.Equal(t, float64(codes.Unavailable), body["code"])
	require.NotContains(t, raw, "shutting down")

	res, body, raw = call("bug")
	require.Equal(t, http.StatusInternalServerError, res.StatusCode)
	require.Contains(t, body["message"], "internal error (ref ")
	require.NotContains(t, raw, "10.9.8.7")
}
