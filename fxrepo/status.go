package fxrepo

import (
	"errors"
	"net/http"

	"github.com/martyfx/martyfx/fxhttp"
)

// errorStatusOption registers HTTPStatusOf with fxhttp, so handlers that
// write a repository error through fxhttp.WriteError answer 404 or 409.
var errorStatusOption = fxhttp.AsErrorStatus(fxhttp.ErrorStatus(HTTPStatusOf))

// HTTPStatusOf maps ErrNotFound to 404 and ErrConflict to 409 anywhere in
// err's chain (also when user code wraps the sentinels itself).
func HTTPStatusOf(err error) (int, bool) {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound, true
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, true
	}
	return 0, false
}

// HTTPStatus is 404 for ErrNotFound and 409 for ErrConflict.
func (e *Error) HTTPStatus() int {
	s, ok := HTTPStatusOf(e.Kind)
	if !ok {
		return http.StatusInternalServerError
	}
	return s
}
