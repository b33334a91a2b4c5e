package fxauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/martyfx/martyfx/fxgrpc"
	"github.com/martyfx/martyfx/fxhttp"
)

// Outgoing says which bearer token an outgoing call carries.
type Outgoing int

const (
	// Forward sends the token of the call being served (verified by
	// fxauth), none outside one.
	Forward Outgoing = iota + 1
	// Own sends this service's client-credentials token
	// (MARTY_AUTH_CLIENT_ID).
	Own
	// ForwardOrOwn forwards the caller's token when there is one, else
	// sends the service's own.
	ForwardOrOwn
)

// errNoClient is a call asking for the service's own token without a
// client configured.
var errNoClient = errors.New("fxauth: no client credentials: set MARTY_AUTH_CLIENT_ID and MARTY_AUTH_CLIENT_SECRET")

// TokenSource is the service's own token (OAuth2 client credentials,
// golang.org/x/oauth2/clientcredentials): fetched from the token endpoint
// (MARTY_AUTH_TOKEN_URL, else the issuer's, discovered) on first use,
// cached, and fetched again shortly before it expires. nil without
// MARTY_AUTH_CLIENT_ID.
func (a *Auth) TokenSource() oauth2.TokenSource {
	if a.cfg.ClientID == "" {
		return nil
	}
	a.ownOnce.Do(func() { a.own = &ownToken{a: a} })
	return a.own
}

// ownToken resolves the token endpoint once, then is clientcredentials'
// reusing source.
type ownToken struct {
	a   *Auth
	mu  sync.Mutex
	src oauth2.TokenSource
}

func (o *ownToken) Token() (*oauth2.Token, error) {
	o.mu.Lock()
	src := o.src
	if src == nil {
		ep, err := o.endpoint()
		if err != nil {
			o.mu.Unlock()
			return nil, err
		}
		cfg := o.a.cfg
		cc := clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: ep, Scopes: cfg.ClientScopes}
		if cfg.ClientAudience != "" {
			cc.EndpointParams = url.Values{"audience": {cfg.ClientAudience}}
		}
		// The context only carries the HTTP client: the source outlives it.
		src = cc.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, o.a.httpClient))
		o.src = src
	}
	o.mu.Unlock()
	t, err := src.Token()
	if err != nil {
		// oauth2's errors may quote the endpoint's body; keep the cause
		// class, not the text, for callers' errors.
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("fxauth: client token: the token endpoint refused the client (status %d)", re.Response.StatusCode)
		}
		return nil, fmt.Errorf("fxauth: client token: %w", err)
	}
	return t, nil
}

func (o *ownToken) endpoint() (string, error) {
	if o.a.cfg.TokenURL != "" {
		return o.a.cfg.TokenURL, nil
	}
	if o.a.verifier == nil {
		return "", errors.New("fxauth: client token: set MARTY_AUTH_TOKEN_URL or MARTY_AUTH_ISSUER")
	}
	return o.a.verifier.tokenEndpoint(context.Background())
}

// outgoingToken is the token an outgoing call made in ctx carries.
func (a *Auth) outgoingToken(ctx context.Context, mode Outgoing) (string, error) {
	if mode == Forward || mode == ForwardOrOwn {
		if t, ok := tokenFrom(ctx); ok {
			return t, nil
		}
		if mode == Forward {
			return "", nil
		}
	}
	src := a.TokenSource()
	if src == nil {
		return "", errNoClient
	}
	t, err := src.Token()
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// GRPCClientOption makes an fxgrpc client (fxgrpc.NewClient,
// Clients.New) send a bearer token with every call, as mode says. A call
// that already has "authorization" metadata keeps it.
func (a *Auth) GRPCClientOption(mode Outgoing) fxgrpc.ClientOption {
	return fxgrpc.WithDialOptions(
		grpc.WithChainUnaryInterceptor(a.UnaryClientInterceptor(mode)),
		grpc.WithChainStreamInterceptor(a.StreamClientInterceptor(mode)))
}

// UnaryClientInterceptor adds the bearer token mode says to unary calls.
func (a *Auth) UnaryClientInterceptor(mode Outgoing) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, err := a.outgoingContext(ctx, mode)
		if err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamClientInterceptor adds the bearer token mode says to streams.
func (a *Auth) StreamClientInterceptor(mode Outgoing) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, err := a.outgoingContext(ctx, mode)
		if err != nil {
			return nil, err
		}
		return streamer(ctx, desc, cc, method, opts...)
	}
}

func (a *Auth) outgoingContext(ctx context.Context, mode Outgoing) (context.Context, error) {
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get("authorization")) > 0 {
		return ctx, nil
	}
	tok, err := a.outgoingToken(ctx, mode)
	if err != nil || tok == "" {
		return ctx, err
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok), nil
}

// HTTPClientOption makes an fxhttp client (fxhttp.NewClient) send a
// bearer token with every request, as mode says; the request's context
// is the call being served.
func (a *Auth) HTTPClientOption(mode Outgoing) fxhttp.ClientOption {
	return fxhttp.WithTransport(a.Transport(nil, mode))
}

// Transport wraps base (http.DefaultTransport when nil) to send the bearer
// token mode says, unless the request has an Authorization header.
func (a *Auth) Transport(base http.RoundTripper, mode Outgoing) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{a: a, base: base, mode: mode}
}

type transport struct {
	a    *Auth
	base http.RoundTripper
	mode Outgoing
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") != "" {
		return t.base.RoundTrip(r)
	}
	tok, err := t.a.outgoingToken(r.Context(), t.mode)
	if err != nil {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, err
	}
	if tok == "" {
		return t.base.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.Header.Set("Authorization", "Bearer "+tok)
	return t.base.RoundTrip(r2)
}
