package fxrepo

import (
	"context"
	"sync"

	"gorm.io/gorm"
)

type txKey struct{}

// txState is the unit of work's transaction carried in a context.
type txState struct {
	tx *gorm.DB

	mu    sync.Mutex
	after []func()
}

func txFrom(ctx context.Context) *txState {
	st, _ := ctx.Value(txKey{}).(*txState)
	return st
}

// DB returns the handle every query should use: the unit of work's
// transaction when ctx carries one, else db.WithContext(ctx). Either way the
// handle carries ctx (cancellation, the current span). db may be nil when
// ctx is known to carry a transaction.
func DB(ctx context.Context, db *gorm.DB) *gorm.DB {
	if st := txFrom(ctx); st != nil {
		return st.tx.WithContext(ctx)
	}
	return db.WithContext(ctx)
}

// InTx reports whether ctx carries a unit of work's transaction.
func InTx(ctx context.Context) bool { return txFrom(ctx) != nil }

// AfterCommit runs fn after the outermost transaction in ctx commits, in
// registration order; never when it rolls back (nor for an attempt that is
// retried). When ctx has no transaction fn runs at once. fn runs on the
// goroutine that called Do, after the commit, with no transaction: keep it
// short (wake a worker, signal a channel).
func AfterCommit(ctx context.Context, fn func()) {
	st := txFrom(ctx)
	if st == nil {
		fn()
		return
	}
	st.mu.Lock()
	st.after = append(st.after, fn)
	st.mu.Unlock()
}

func (st *txState) runAfterCommit() {
	st.mu.Lock()
	fns := st.after
	st.after = nil
	st.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}
