package fxauth

import (
	"context"
	"strings"
	"time"
)

// Principal is the verified caller: the claims of its token. It never
// holds the token itself. It is shared by the calls made with the same
// token (Config.TokenCache): read it, do not change it.
type Principal struct {
	// Subject is the token's "sub".
	Subject string
	// Issuer is the token's "iss".
	Issuer string
	// Audience is the token's "aud".
	Audience []string
	// Expiry is the token's "exp".
	Expiry time.Time
	// Scopes are read from Config.ScopeClaim.
	Scopes []string
	// Roles are read from Config.RolesClaim.
	Roles []string
	// Raw holds every claim of the token, decoded from JSON.
	Raw map[string]any
}

type principalKey struct{}

type tokenKey struct{}

// Claims returns the verified caller of the request or call ctx belongs
// to; false for an anonymous (public) call or outside one.
func Claims(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok && p != nil
}

// Subject is the verified caller's subject, "" when anonymous.
func Subject(ctx context.Context) string {
	if p, ok := Claims(ctx); ok {
		return p.Subject
	}
	return ""
}

// WithClaims returns ctx carrying p (for tests of handlers that read
// Claims).
func WithClaims(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// withToken keeps the verified raw token in ctx for forwarding
// (ForwardToken); only this package reads it.
func withToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// tokenFrom is the caller's verified token, for forwarding.
func tokenFrom(ctx context.Context) (string, bool) {
	t, ok := ctx.Value(tokenKey{}).(string)
	return t, ok && t != ""
}

// bearer extracts the token of an "Authorization: Bearer <token>" value
// (the scheme is case-insensitive).
func bearer(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// claimPath reads a dot-separated path ("realm_access.roles") from the
// claims as strings: an array of strings, or a space-separated string.
func claimPath(raw map[string]any, path string) []string {
	if path == "" {
		return nil
	}
	var v any = raw
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[part]
	}
	switch t := v.(type) {
	case string:
		return strings.Fields(t)
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
