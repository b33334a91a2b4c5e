package fxauth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Access is what a gRPC method or HTTP route requires of its caller
// (Public, Authenticated, Scopes, Roles).
type Access struct {
	kind   accessKind
	values []string
}

type accessKind uint8

const (
	accessDenied accessKind = iota // the zero Access: no rule
	accessPublic
	accessAuthenticated
	accessScopes
	accessRoles
)

// Public lets anyone call, with or without a token (no token is verified).
func Public() Access { return Access{kind: accessPublic} }

// Authenticated needs a valid token.
func Authenticated() Access { return Access{kind: accessAuthenticated} }

// Scopes needs a valid token carrying every one of the scopes
// (Config.ScopeClaim).
func Scopes(scopes ...string) Access { return Access{kind: accessScopes, values: slices.Clone(scopes)} }

// Roles needs a valid token carrying at least one of the roles
// (Config.RolesClaim).
func Roles(roles ...string) Access { return Access{kind: accessRoles, values: slices.Clone(roles)} }

// String is the rule's config form: public, authenticated, "scopes:a b",
// "roles:x y".
func (a Access) String() string {
	switch a.kind {
	case accessPublic:
		return "public"
	case accessAuthenticated:
		return "authenticated"
	case accessScopes:
		return "scopes:" + strings.Join(a.values, " ")
	case accessRoles:
		return "roles:" + strings.Join(a.values, " ")
	}
	return "denied"
}

// public reports whether no token is needed.
func (a Access) public() bool { return a.kind == accessPublic }

// allows reports whether a verified caller satisfies the access; it
// returns the missing scopes for the WWW-Authenticate challenge.
func (a Access) allows(p *Principal) (bool, []string) {
	switch a.kind {
	case accessPublic, accessAuthenticated:
		return true, nil
	case accessScopes:
		var missing []string
		for _, s := range a.values {
			if !slices.Contains(p.Scopes, s) {
				missing = append(missing, s)
			}
		}
		return len(missing) == 0, missing
	case accessRoles:
		for _, r := range a.values {
			if slices.Contains(p.Roles, r) {
				return true, nil
			}
		}
		return false, nil
	}
	return false, nil
}

// Rule is the access a gRPC method or HTTP route requires (AsRule).
type Rule struct {
	// Target is a gRPC full method ("/orders.v1.Orders/Get"), a whole
	// service ("/orders.v1.Orders/*"), or an HTTP route pattern exactly as
	// registered with fxhttp.AsRoute ("POST /v1/orders").
	Target string
	Access Access
}

// parseAccess reads the config form of an Access.
func parseAccess(s string) (Access, error) {
	s = strings.TrimSpace(s)
	kind, rest, _ := strings.Cut(s, ":")
	fields := strings.Fields(rest)
	switch strings.ToLower(strings.TrimSpace(kind)) {
	case "public":
		return Public(), nil
	case "authenticated":
		return Authenticated(), nil
	case "scopes", "scope":
		if len(fields) == 0 {
			return Access{}, fmt.Errorf("%q names no scope", s)
		}
		return Scopes(fields...), nil
	case "roles", "role":
		if len(fields) == 0 {
			return Access{}, fmt.Errorf("%q names no role", s)
		}
		return Roles(fields...), nil
	}
	return Access{}, fmt.Errorf(`%q is not public, authenticated, "scopes:a b" or "roles:x y"`, s)
}

// parseRules reads Config.Rules.
func parseRules(items []string) ([]Rule, error) {
	var out []Rule
	for _, it := range items {
		if strings.TrimSpace(it) == "" {
			continue
		}
		target, access, ok := strings.Cut(it, "=")
		target = strings.TrimSpace(target)
		if !ok || target == "" {
			return nil, fmt.Errorf("%q: want TARGET=ACCESS", it)
		}
		if err := checkTarget(target); err != nil {
			return nil, err
		}
		a, err := parseAccess(access)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", target, err)
		}
		out = append(out, Rule{Target: target, Access: a})
	}
	return out, nil
}

// checkTarget accepts a gRPC method or service ("/pkg.Svc/Method",
// "/pkg.Svc/*") or an HTTP pattern.
func checkTarget(t string) error {
	if strings.HasPrefix(t, "/") && strings.Count(t, "/") == 2 && !strings.Contains(t, " ") && !strings.Contains(t, "{") {
		if strings.HasSuffix(t, "/") {
			return fmt.Errorf("%q: a gRPC target is /package.Service/Method or /package.Service/*", t)
		}
		return nil
	}
	if t == "" {
		return errors.New("empty target")
	}
	return nil // an HTTP pattern: matched as registered
}

// rules finds the access of a gRPC method or HTTP pattern.
type rules struct {
	exact map[string]Access // method or pattern
	svc   map[string]Access // "/pkg.Svc/" prefix
}

// newRules merges registered rules and config rules (which win).
func newRules(registered, configured []Rule) (*rules, error) {
	r := &rules{exact: map[string]Access{}, svc: map[string]Access{}}
	for _, set := range [][]Rule{registered, configured} {
		for _, rule := range set {
			if err := checkTarget(rule.Target); err != nil {
				return nil, fmt.Errorf("fxauth: rule: %w", err)
			}
			if rule.Access.kind == accessDenied {
				return nil, fmt.Errorf("fxauth: rule %q: no access given (use fxauth.Public, Authenticated, Scopes or Roles)", rule.Target)
			}
			if svc, ok := strings.CutSuffix(rule.Target, "/*"); ok && strings.HasPrefix(svc, "/") && !strings.Contains(svc, " ") {
				r.svc[svc+"/"] = rule.Access
				continue
			}
			r.exact[rule.Target] = rule.Access
		}
	}
	return r, nil
}

// grpc is the access of a gRPC full method; false when no rule covers it.
func (r *rules) grpc(method string) (Access, bool) {
	if a, ok := r.exact[method]; ok {
		return a, true
	}
	if i := strings.LastIndexByte(method, '/'); i > 0 {
		if a, ok := r.svc[method[:i+1]]; ok {
			return a, true
		}
	}
	return Access{}, false
}

// http is the access of an HTTP route pattern.
func (r *rules) http(pattern string) (Access, bool) {
	a, ok := r.exact[pattern]
	return a, ok
}
