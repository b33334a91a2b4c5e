package fxauth

import (
	"context"
	"net"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/martyfx/martyfx/fxgrpc"
)

// GRPCAuthFunc is the check of every gRPC call, unary and stream, as
// fxgrpc's AuthFunc (fxgrpc runs it after recovery and before validation,
// and skips it for the health and reflection services). It answers
// UNAUTHENTICATED (with a www-authenticate header), PERMISSION_DENIED,
// RESOURCE_EXHAUSTED (with a RetryInfo and a retry-after header) or
// UNAVAILABLE when the issuer's keys cannot be had. nil when neither
// authentication nor rate limiting is on.
func (a *Auth) GRPCAuthFunc() fxgrpc.AuthFunc {
	if a.verifier == nil && a.limiter == nil {
		return nil
	}
	return a.authGRPC
}

func (a *Auth) authGRPC(ctx context.Context, method string) (context.Context, error) {
	access, ruled := a.rules.grpc(method)
	var header string
	if v := metadata.ValueFromIncomingContext(ctx, "authorization"); len(v) > 0 {
		header = v[0]
	}
	in := ctx
	ctx, r, _ := a.decide(ctx, call{
		transport: "grpc", target: method, access: access, ruled: ruled, header: header,
		clientIP: func() string { return a.grpcClientIP(in) },
	})
	if r == nil {
		return ctx, nil
	}
	return nil, a.grpcError(ctx, r)
}

func (a *Auth) grpcError(ctx context.Context, r *refusal) error {
	switch r.outcome {
	case outcomeUnauthenticated:
		_ = grpc.SetHeader(ctx, metadata.Pairs("www-authenticate", a.challenge(r)))
		return status.Error(codes.Unauthenticated, "unauthenticated: "+r.desc)
	case outcomeDenied:
		if c := a.challenge(r); c != "" {
			_ = grpc.SetHeader(ctx, metadata.Pairs("www-authenticate", c))
		}
		return status.Error(codes.PermissionDenied, "permission denied")
	case outcomeLimited:
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(seconds(r.limit.retryAfter))))
		st := status.New(codes.ResourceExhausted, "rate limit exceeded")
		if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(r.limit.retryAfter)}); err == nil {
			st = d
		}
		return st.Err()
	}
	return status.Error(codes.Unavailable, "token verification unavailable")
}

// grpcClientIP is the caller's IP: the connection's peer, or with trusted
// proxies the X-Forwarded-For entry that many hops from the right. A call
// from a loopback peer carrying X-Forwarded-For is the in-process REST
// gateway's, which appended the HTTP client's address: one hop more.
func (a *Auth) grpcClientIP(ctx context.Context) string {
	var ip string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		ip = hostOf(p.Addr.String())
	}
	xff := metadata.ValueFromIncomingContext(ctx, "x-forwarded-for")
	hops := a.cfg.TrustedProxies
	if parsed := net.ParseIP(ip); len(xff) > 0 && parsed != nil && parsed.IsLoopback() {
		hops++
	}
	if hops > 0 {
		if f := forwardedIP(xff, hops); f != "" {
			return f
		}
	}
	return ip
}

// seconds rounds a delay up to whole seconds, at least 1.
func seconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(1, s)
}
