package fxauth

import (
	"context"
	"time"
)

// AllowForTest spends one token of key's bucket (as an anonymous caller
// with IP key would) and says whether it was allowed.
func AllowForTest(a *Auth, key string) bool {
	return a.limiter.take(context.Background(), key, time.Now()).ok
}
