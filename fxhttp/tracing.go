package fxhttp

import (
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// instrumentationName names the tracer and meter scope of fxhttp.
const instrumentationName = "github.com/martyfx/martyfx/fxhttp"

// untracedPaths are probe and scrape paths: no span, no access log line.
var untracedPaths = map[string]bool{
	"/livez": true, "/readyz": true, "/startupz": true, "/healthz": true, "/metrics": true,
}

// propagatorFields returns the canonical header names a propagator reads,
// so a request without any of them skips Extract (and its allocations).
func propagatorFields(p propagation.TextMapPropagator) []string {
	var out []string
	for _, f := range p.Fields() {
		out = append(out, textproto.CanonicalMIMEHeaderKey(f))
	}
	return out
}

func hasAny(h http.Header, keys []string) bool {
	for _, k := range keys {
		if _, ok := h[k]; ok {
			return true
		}
	}
	return false
}

// standardMethod returns the method when it is one of the standard ones
// (a constant string, so labels never copy it), else "".
func standardMethod(m string) string {
	switch m {
	case http.MethodGet:
		return http.MethodGet
	case http.MethodPost:
		return http.MethodPost
	case http.MethodPut:
		return http.MethodPut
	case http.MethodDelete:
		return http.MethodDelete
	case http.MethodPatch:
		return http.MethodPatch
	case http.MethodHead:
		return http.MethodHead
	case http.MethodOptions:
		return http.MethodOptions
	case http.MethodConnect:
		return http.MethodConnect
	case http.MethodTrace:
		return http.MethodTrace
	}
	return ""
}

// routeOf is the path part of a ServeMux pattern: "GET example.com/x/{id}"
// gives "/x/{id}" (the http.route attribute and the route label).
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, '/'); i >= 0 {
		return pattern[i:]
	}
	return ""
}

// splitHostPort splits "host:port" leniently: port -1 when missing.
func splitHostPort(hostport string) (string, int) {
	if !strings.Contains(hostport, ":") {
		return hostport, -1
	}
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", -1
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, -1
	}
	return host, int(port)
}

// requestAttrs appends the span attributes of the OpenTelemetry HTTP server
// semantic conventions (v1.43, as otelhttp sets them) to buf.
func requestAttrs(buf []attribute.KeyValue, r *http.Request) []attribute.KeyValue {
	tls := r.TLS != nil
	host, port := splitHostPort(r.Host)
	method := standardMethod(r.Method)
	if method == "" {
		buf = append(buf, semconv.HTTPRequestMethodOther, semconv.HTTPRequestMethodOriginal(r.Method))
	} else {
		buf = append(buf, semconv.HTTPRequestMethodKey.String(method))
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	buf = append(buf, semconv.ServerAddress(host), semconv.URLScheme(scheme))
	if port > 0 && (!tls || port != 443) && (tls || port != 80) {
		buf = append(buf, semconv.ServerPort(port))
	}
	peer, peerPort := splitHostPort(r.RemoteAddr)
	if peer != "" {
		buf = append(buf, semconv.NetworkPeerAddress(peer))
		if peerPort > 0 {
			buf = append(buf, semconv.NetworkPeerPort(peerPort))
		}
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		buf = append(buf, semconv.UserAgentOriginal(ua))
	}
	client := peer
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		client, _, _ = strings.Cut(xff, ",")
		client = strings.TrimSpace(client)
	}
	if client != "" {
		buf = append(buf, semconv.ClientAddress(client))
	}
	if r.URL != nil && r.URL.Path != "" {
		buf = append(buf, semconv.URLPath(r.URL.Path))
	}
	switch r.ProtoMajor {
	case 1:
		if r.ProtoMinor == 1 {
			buf = append(buf, protoHTTP11)
		} else {
			buf = append(buf, semconv.NetworkProtocolVersion("1."+strconv.Itoa(r.ProtoMinor)))
		}
	case 2:
		buf = append(buf, protoHTTP2)
	default:
		if _, v, ok := strings.Cut(r.Proto, "/"); ok {
			buf = append(buf, semconv.NetworkProtocolVersion(v))
		}
	}
	return buf
}

var (
	protoHTTP11 = semconv.NetworkProtocolVersion("1.1")
	protoHTTP2  = semconv.NetworkProtocolVersion("2")
	// requestIDKey is the span attribute holding the request id.
	requestIDKey = attribute.Key("http.request.id")
)
