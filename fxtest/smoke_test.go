package fxtest_test

import (
	"testing"

	"github.com/martyfx/martyfx/fxtest"
)

func TestSmoke(t *testing.T) {
	app := fxtest.New(t)
	t.Log(app.AdminURL(), app.GRPCAddr())
	var s string
	t.Log(app.Admin().Get("/readyz", &s), s)
}
