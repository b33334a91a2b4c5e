// Package fxauth authenticates, authorizes and rate-limits the calls of
// fxgrpc's server and the requests of fxhttp's public server, with one
// configuration (the "auth" section, MARTY_AUTH_*).
//
// Authentication verifies OIDC / JWT bearer tokens: the issuer's keys are
// found by discovery and cached (a token naming an unknown key fetches
// them again, so rotated keys work without a restart), the algorithm must
// be on an asymmetric allow-list ("none" and HMAC never pass), and iss,
// aud, exp and nbf are checked with a small leeway. JOSE parsing and
// signatures are go-jose's, discovery go-oidc's. A verified caller's
// claims are in the context (Claims), its subject on the span
// (enduser.id) and in the access log lines, never its token.
//
// Authorization is per gRPC method (or service) and HTTP route pattern:
// Public, Authenticated, Scopes or Roles, declared with AsRule or
// MARTY_AUTH_RULES. Once authentication is on, what has no rule is refused
// and listed in a start warning; gRPC health and reflection stay public,
// and the admin server (probes, metrics) is not affected. A missing or bad
// token is UNAUTHENTICATED / 401 with WWW-Authenticate, a missing right
// PERMISSION_DENIED / 403.
//
// Rate limiting gives each caller (its subject, or client IP behind
// MARTY_AUTH_TRUSTED_PROXIES proxies) a token bucket; over it a call gets
// RESOURCE_EXHAUSTED / 429 with Retry-After and RateLimit headers.
//
// Outgoing calls carry the caller's token (Forward), the service's own
// client-credentials token (Own), or the first of them there is
// (ForwardOrOwn): Auth.GRPCClientOption, Auth.HTTPClientOption.
package fxauth
