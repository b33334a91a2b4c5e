package fxrepo

import "go.uber.org/fx"

// errorStatusOption maps ErrNotFound and ErrConflict to HTTP statuses once
// fxhttp offers AsErrorStatus.
var errorStatusOption = fx.Options()
