package fxgrpc_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxgrpc/internal/testpb"
)

// metricsServer serves the echo service with the given Prometheus collector
// and interceptors over loopback TCP, and returns a client and the registry.
func metricsServer(t *testing.T, c prometheus.Collector, u grpc.UnaryServerInterceptor, s grpc.StreamServerInterceptor,
	initialize func(*grpc.Server),
) (*grpc.ClientConn, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(c))
	srv := grpc.NewServer(grpc.UnaryInterceptor(u), grpc.StreamInterceptor(s))
	srv.RegisterService(&testpb.Echo_ServiceDesc, newEcho())
	initialize(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return dial(t, lis.Addr().String()), reg
}

// exposition renders every series of reg: name, type, help, labels and
// value (a histogram's buckets and sample count; its sum depends on timing).
func exposition(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetCounter().GetValue()
			if h := m.GetHistogram(); h != nil {
				v = float64(h.GetSampleCount())
				var bounds []string
				for _, b := range h.GetBucket() {
					bounds = append(bounds, strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64))
				}
				labels = append(labels, "le="+strings.Join(bounds, "|"))
			}
			out = append(out, fmt.Sprintf("%s %s %q {%s} %g", mf.GetName(), mf.GetType(), mf.GetHelp(), strings.Join(labels, ","), v))
		}
	}
	sort.Strings(out)
	return out
}

// callEcho makes the same calls on conn: unary OK and failing, a server
// stream of three messages, a client stream of two, a cancelled stream.
func callEcho(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx := ctxT(t)
	c := testpb.NewEchoClient(conn)
	for range 3 {
		_, err := c.Echo(ctx, &testpb.EchoRequest{Message: "x"})
		require.NoError(t, err)
	}
	_, err := c.Echo(ctx, &testpb.EchoRequest{Fail: "unavailable"})
	require.Equal(t, codes.Unavailable, status.Code(err))
	_, err = c.Echo(ctx, &testpb.EchoRequest{Fail: "internal"})
	require.Equal(t, codes.Unknown, status.Code(err))
	st, err := c.EchoStream(ctx, &testpb.EchoRequest{Message: "s", Repeat: 3})
	require.NoError(t, err)
	for {
		_, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
	}
	cs, err := c.Collect(ctx)
	require.NoError(t, err)
	require.NoError(t, cs.Send(&testpb.EchoRequest{Message: "a"}))
	require.NoError(t, cs.Send(&testpb.EchoRequest{Message: "b"}))
	_, err = cs.CloseAndRecv()
	require.NoError(t, err)
}

// The server's Prometheus series are go-grpc-middleware's, series for
// series and count for count, after InitializeMetrics and the same calls.
func TestServerMetricsMatchGoGRPCMiddleware(t *testing.T) {
	t.Parallel()
	ref := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	refConn, refReg := metricsServer(t, ref, ref.UnaryServerInterceptor(), ref.StreamServerInterceptor(),
		func(s *grpc.Server) { ref.InitializeMetrics(s) })
	c, u, s, initialize := fxgrpc.ServerMetricsInterceptors()
	conn, reg := metricsServer(t, c, u, s, initialize)

	require.Equal(t, exposition(t, refReg), exposition(t, reg), "after InitializeMetrics")
	callEcho(t, refConn)
	callEcho(t, conn)
	want := exposition(t, refReg)
	require.Contains(t, want, `grpc_server_handled_total COUNTER "Total number of RPCs completed on the server, regardless of success or failure." {grpc_code=OK,grpc_method=Echo,grpc_service=martyfx.fxgrpc.testpb.Echo,grpc_type=unary} 3`)
	require.Equal(t, want, exposition(t, reg))
}
