package fxrepo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"gorm.io/gorm"
)

// UnitOfWork runs functions in a database transaction carried by their
// context. It is in the graph; NewUnitOfWork builds one without Fx.
type UnitOfWork interface {
	// Do begins a transaction, calls fn with a context that carries it,
	// and commits when fn returns nil. It rolls back when fn returns an
	// error (returned as is) or panics (the panic is re-raised after the
	// rollback). Queries made through DB(ctx, db) inside fn use the
	// transaction.
	//
	// Nested: when ctx already carries a transaction, Do joins it and just
	// calls fn; options are ignored and the outermost Do commits. An error
	// from a nested Do does not roll back by itself: it rolls back the
	// whole transaction when the outer fn returns it.
	//
	// Do rolls back and re-runs fn (with a fresh transaction) up to the
	// retry limit, with jittered exponential backoff, when the attempt
	// failed in a way that leaves nothing committed: a PostgreSQL
	// serialization failure or deadlock (40001, 40P01) from fn or the
	// commit; a connection that was dead, refused or lost at BEGIN (nothing
	// ran), under fn (the server rolls the transaction back) or before the
	// commit was sent. A commit that fails after it was sent is never
	// re-run: it may have committed. fn must be safe to re-run (no side
	// effects outside the database; use AfterCommit for those).
	Do(ctx context.Context, fn func(ctx context.Context) error, opts ...TxOption) error
}

// TxOption configures a transaction. Given to NewUnitOfWork they are the
// defaults of every Do; given to Do they apply to that call.
type TxOption func(*txOptions)

type txOptions struct {
	isolation  sql.IsolationLevel
	readOnly   bool
	retries    int
	backoff    time.Duration
	backoffMax time.Duration
	log        *zap.Logger
}

// WithIsolation sets the isolation level (sql.LevelSerializable, ...).
// SQLite transactions are always serializable and ignore it.
func WithIsolation(level sql.IsolationLevel) TxOption {
	return func(o *txOptions) { o.isolation = level }
}

// WithReadOnly begins a read-only transaction (on SQLite a deferred one,
// which does not take the write lock).
func WithReadOnly() TxOption {
	return func(o *txOptions) { o.readOnly = true }
}

// WithRetries sets how many times fn is re-run after a serialization
// failure, a deadlock or a lost connection (0 disables retries). Default 3
// (MARTY_DB_TX_RETRIES).
func WithRetries(n int) TxOption {
	return func(o *txOptions) { o.retries = max(n, 0) }
}

// WithRetryBackoff sets the first wait before a retry and its cap; the wait
// doubles each retry, with jitter. Default 10ms and 500ms.
func WithRetryBackoff(first, maxWait time.Duration) TxOption {
	return func(o *txOptions) {
		o.backoff = max(first, time.Millisecond)
		o.backoffMax = max(maxWait, o.backoff)
	}
}

// WithLogger sets the logger that retries are logged to, at info (default:
// none without Fx; the Module's unit of work logs to the app's logger).
func WithLogger(log *zap.Logger) TxOption {
	return func(o *txOptions) { o.log = log }
}

// unitOfWork is the UnitOfWork on a *gorm.DB; retries are logged at info.
type unitOfWork struct {
	db   *gorm.DB
	opts txOptions
	log  *zap.Logger
}

// NewUnitOfWork returns a UnitOfWork on db; opts are the defaults of every Do.
func NewUnitOfWork(db *gorm.DB, opts ...TxOption) UnitOfWork {
	u := &unitOfWork{db: db, log: zap.NewNop(), opts: txOptions{
		retries: 3, backoff: 10 * time.Millisecond, backoffMax: 500 * time.Millisecond,
	}}
	for _, o := range opts {
		o(&u.opts)
	}
	if u.opts.log != nil {
		u.log = u.opts.log
	}
	return u
}

func (u *unitOfWork) Do(ctx context.Context, fn func(ctx context.Context) error, opts ...TxOption) error {
	if txFrom(ctx) != nil {
		return fn(ctx)
	}
	o := u.opts
	for _, opt := range opts {
		opt(&o)
	}
	log := u.log
	if o.log != nil {
		log = o.log
	}
	wait := o.backoff
	for attempt := 0; ; attempt++ {
		why, err := u.once(ctx, fn, o)
		if err == nil {
			return nil
		}
		if why == "" || attempt >= o.retries || ctx.Err() != nil {
			if why != "" && attempt > 0 {
				return fmt.Errorf("fxrepo: transaction failed after %d retries: %w", attempt, err)
			}
			return err
		}
		sleep := wait/2 + rand.N(wait/2+1)
		log.Info("retrying transaction after "+why,
			zap.Int("attempt", attempt+1), zap.Duration("backoff", sleep), zap.Error(err))
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("fxrepo: retry transaction: %w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
		wait = min(wait*2, o.backoffMax)
	}
}

// Why a failed attempt may be re-run.
const (
	whySerialization = "a serialization failure"
	whyConnection    = "losing its connection"
)

// retryable says why an attempt that failed with err may be re-run, or "".
func retryable(err error) string {
	switch {
	case IsRetryable(err):
		return whySerialization
	case connectionLost(err):
		return whyConnection
	}
	return ""
}

// once runs one attempt: begin, fn, commit or rollback. why is not empty
// when the attempt may be re-run: a serialization failure or deadlock, or a
// connection that failed before the commit was sent (at begin, when nothing
// ran, or under fn, when the server rolls the transaction back). A commit
// that fails on a lost connection is not re-run unless the commit was
// never sent: the transaction may have committed.
func (u *unitOfWork) once(ctx context.Context, fn func(ctx context.Context) error, o txOptions) (why string, err error) {
	tx := u.db.WithContext(ctx).Begin(&sql.TxOptions{Isolation: o.isolation, ReadOnly: o.readOnly})
	if tx.Error != nil {
		return retryable(tx.Error), fmt.Errorf("fxrepo: begin transaction: %w", tx.Error)
	}
	st := &txState{tx: tx}
	txCtx := context.WithValue(ctx, txKey{}, st)
	committed := false
	defer func() {
		if committed {
			return
		}
		// Roll back without the caller's context: it may be cancelled.
		rbErr := tx.WithContext(context.WithoutCancel(ctx)).Rollback().Error
		if r := recover(); r != nil {
			panic(r)
		}
		if rbErr != nil && !errors.Is(rbErr, sql.ErrTxDone) && err != nil && why == "" {
			err = fmt.Errorf("%w (rollback: %v)", err, rbErr) //nolint:errorlint // the rollback's failure is context: classification follows err alone
		}
	}()
	if err = fn(txCtx); err != nil {
		return retryable(err), err
	}
	if err = tx.Commit().Error; err != nil {
		// The transaction is over either way.
		committed = true
		why = ""
		if IsRetryable(err) || pgconn.SafeToRetry(err) {
			why = retryable(err)
			if why == "" {
				why = whyConnection
			}
		}
		return why, fmt.Errorf("fxrepo: commit: %w", err)
	}
	committed = true
	st.runAfterCommit()
	return "", nil
}
