package fxhttp

import (
	"fmt"
	"net/http"
	"slices"
)

// newMux registers the routes on a new ServeMux and returns their
// patterns. ServeMux.Handle panics on an invalid pattern and on a pattern
// that conflicts with one registered before (both match some request and
// neither is more specific); newMux turns that into an error of its own
// naming the routes, found by registering them again in fresh muxes, so
// nothing depends on the text of ServeMux's panics.
//
// Each handler is wrapped to record the pattern that matched before it
// runs: a handler serving a ServeMux of its own overwrites
// Request.Pattern, and the metrics, span and access log must name the
// route this server matched.
func newMux(routes []Route) (*http.ServeMux, []string, error) {
	mux := http.NewServeMux()
	patterns := make([]string, 0, len(routes))
	for _, rt := range routes {
		if slices.Contains(patterns, rt.Pattern) {
			return nil, nil, fmt.Errorf("fxhttp: route %q is registered twice", rt.Pattern)
		}
		if rt.Handler == nil {
			return nil, nil, fmt.Errorf("fxhttp: route %q has a nil handler", rt.Pattern)
		}
		if handle(mux, rt.Pattern, &matched{pattern: rt.Pattern, next: rt.Handler}) != nil {
			return nil, nil, patternError(rt.Pattern, patterns)
		}
		patterns = append(patterns, rt.Pattern)
	}
	return mux, patterns, nil
}

// handle is mux.Handle, with its panic returned as an error.
func handle(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if e, ok := v.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", v)
			}
		}
	}()
	mux.Handle(pattern, h)
	return nil
}

// patternError says why ServeMux refused pattern after the earlier ones:
// the pattern alone is invalid, or it conflicts with one of them.
func patternError(pattern string, earlier []string) error {
	nop := http.NotFoundHandler()
	if err := handle(http.NewServeMux(), pattern, nop); err != nil {
		return fmt.Errorf("fxhttp: route %q is not a valid pattern (see net/http.ServeMux): %w", pattern, err)
	}
	for _, e := range earlier {
		mux := http.NewServeMux()
		if handle(mux, e, nop) == nil && handle(mux, pattern, nop) != nil {
			return fmt.Errorf("fxhttp: route %q conflicts with route %q: some requests match both and neither is more specific; change one of them", pattern, e)
		}
	}
	return fmt.Errorf("fxhttp: route %q cannot be registered after the routes %q", pattern, earlier)
}

// matched records the pattern the server's ServeMux matched in the
// request's info, then serves the route's handler.
type matched struct {
	pattern string
	next    http.Handler
}

func (m *matched) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if info := infoFrom(r.Context()); info != nil {
		info.pattern = m.pattern
	}
	m.next.ServeHTTP(w, r)
}
