package health_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"

	"github.com/martyfx/martyfx/fxmonitor/health"
)

// A critical check fails readiness; a non-critical one only degrades it.
func ExampleNew() {
	h, err := health.New([]health.Check{
		{Name: "db", Kinds: health.Readiness, Critical: true, Func: func(context.Context) error { return nil }},
		{Name: "cache", Kinds: health.Readiness, Func: func(context.Context) error { return errors.New("redis: connection refused") }},
	}, health.Options{})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	_ = h.Start(ctx)
	defer func() { _ = h.Stop(ctx) }()

	rec := httptest.NewRecorder()
	h.ProbeHandler(health.Readiness).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	body, _ := io.ReadAll(rec.Body)
	fmt.Print(rec.Code, " ", string(body))
	// Output:
	// 200 degraded
	// [-]cache failing (non-critical): redis: connection refused
}
