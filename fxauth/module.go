package fxauth

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

// Module provides the "auth" Config and *Auth, and puts its checks on
// fxgrpc's server (as the fxgrpc.AuthFunc) and fxhttp's public server (as
// middleware at MiddlewareOrder). With neither MARTY_AUTH_ISSUER nor
// MARTY_AUTH_RATE_LIMIT set it does nothing.
var Module = fx.Module("martyfx.auth",
	fx.Provide(
		fxcore.ProvideConfig[Config]("auth", DefaultConfig),
		newAuth,
		func(a *Auth) fxgrpc.AuthFunc { return a.GRPCAuthFunc() },
	),
	fxhttp.AsMiddleware(func(a *Auth) func(http.Handler) http.Handler { return a.Middleware }, MiddlewareOrder),
	fx.Invoke(reportUncovered),
)

type authParams struct {
	fx.In

	LC         fx.Lifecycle
	Config     Config
	Logger     *zap.Logger
	Info       fxcore.ServiceInfo       `optional:"true"`
	Registerer prometheus.Registerer    `optional:"true"`
	GRPC       fxgrpc.Config            `optional:"true"`
	Rules      []Rule                   `group:"martyfx.auth.rules"`
	Gateways   []fxgrpc.GatewayRegister `group:"martyfx.grpc.gateways"`
}

func newAuth(p authParams) (*Auth, error) {
	a, err := buildAuth(p)
	if err != nil {
		return nil, err
	}
	p.LC.Append(fx.StopHook(a.Close))
	return a, nil
}

func buildAuth(p authParams) (*Auth, error) {
	opts := Options{
		Logger:     p.Logger,
		Registerer: p.Registerer,
		Rules:      p.Rules,
		Realm:      p.Info.Name,
		OnSubject:  []func(context.Context, string){fxhttp.SetSubject, fxgrpc.SetSubject},
	}
	if len(p.Gateways) > 0 && p.GRPC.GatewayPattern != "" {
		opts.SkipPatterns = []string{p.GRPC.GatewayPattern}
	}
	return NewAuth(p.Config, opts)
}

type coverageParams struct {
	fx.In

	Auth     *Auth
	Logger   *zap.Logger
	Services []fxgrpc.Service `group:"martyfx.grpc.services"`
	Routes   []fxhttp.Route   `group:"martyfx.http.routes"`
}

// reportUncovered warns, once authentication is on, about the methods and
// routes no rule covers: they are refused.
func reportUncovered(p coverageParams) {
	if missing := p.Auth.Uncovered(p.Services, p.Routes); len(missing) > 0 {
		p.Logger.Warn("fxauth: no authorization rule for these methods and routes; they are refused (PERMISSION_DENIED / 403) — declare one with fxauth.AsRule or MARTY_AUTH_RULES",
			zap.Strings("uncovered", missing))
	}
}

// Uncovered lists the gRPC methods of services and the HTTP routes that no
// rule covers (and so are refused); nil with authentication off.
func (a *Auth) Uncovered(services []fxgrpc.Service, routes []fxhttp.Route) []string {
	if a.verifier == nil {
		return nil
	}
	var out []string
	for _, s := range services {
		if s.Desc == nil || strings.HasPrefix(s.Desc.ServiceName, "grpc.health.") || strings.HasPrefix(s.Desc.ServiceName, "grpc.reflection.") {
			continue
		}
		names := make([]string, 0, len(s.Desc.Methods)+len(s.Desc.Streams))
		for _, m := range s.Desc.Methods {
			names = append(names, m.MethodName)
		}
		for _, m := range s.Desc.Streams {
			names = append(names, m.StreamName)
		}
		for _, n := range names {
			full := "/" + s.Desc.ServiceName + "/" + n
			if _, ok := a.rules.grpc(full); !ok {
				out = append(out, full)
			}
		}
	}
	for _, r := range routes {
		if a.skip[r.Pattern] {
			continue
		}
		if _, ok := a.rules.http(r.Pattern); !ok {
			out = append(out, r.Pattern)
		}
	}
	slices.Sort(out)
	return out
}
