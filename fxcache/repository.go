package fxcache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"gorm.io/gorm/schema"

	"github.com/martyfx/martyfx/fxrepo"
)

// Repository wraps an fxrepo.Store so that Get reads through the cache and
// Create, Update and Delete invalidate the entity once the unit of work
// commits (never before, never on rollback), on this replica, in Redis and
// (through an Invalidated event on the bus) on the other replicas. List,
// Count and Exists go to the store. Inside a unit of work Get reads the
// store too, so a transaction sees its own writes.
//
// Get returns a copy of the cached entity (a shallow one: slices and maps
// inside T are shared, do not mutate them).
type Repository[T any, ID comparable] struct {
	fxrepo.Store[T, ID]
	cache  *Typed[T]
	entity string
	pk     *schema.Field
	err    error
}

var _ fxrepo.Store[struct{ ID int }, int] = (*Repository[struct{ ID int }, int])(nil)

// NewRepository returns store with a read-through cache named after T
// ("Order") unless name is given. T's primary key (found as GORM finds it)
// keys the entries.
func NewRepository[T any, ID comparable](store fxrepo.Store[T, ID], c *Cache, name string, opts TypedOptions) *Repository[T, ID] {
	typ := reflect.TypeFor[T]()
	if name == "" {
		name = typ.Name()
	}
	r := &Repository[T, ID]{Store: store, cache: Of[T](c, name, opts), entity: typ.Name()}
	s, err := schema.Parse(new(T), &sync.Map{}, schema.NamingStrategy{})
	switch {
	case err != nil:
		r.err = fmt.Errorf("fxcache: repository of %s: %w", r.entity, err)
	case len(s.PrimaryFields) != 1:
		r.err = fmt.Errorf("fxcache: repository of %s: want exactly one primary key field, found %d", r.entity, len(s.PrimaryFields))
	default:
		r.pk = s.PrimaryFields[0]
	}
	return r
}

// Cache is the typed view the repository reads through.
func (r *Repository[T, ID]) Cache() *Typed[T] { return r.cache }

func key[ID comparable](id ID) string { return fmt.Sprint(id) }

// Get reads through the cache (the store inside a unit of work).
func (r *Repository[T, ID]) Get(ctx context.Context, id ID) (*T, error) {
	if fxrepo.InTx(ctx) {
		return r.Store.Get(ctx, id)
	}
	v, err := r.cache.GetOrLoad(ctx, key(id), func(ctx context.Context) (T, error) {
		p, err := r.Store.Get(ctx, id)
		if err != nil {
			var zero T
			return zero, err
		}
		return *p, nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, &fxrepo.Error{Op: "get", Entity: r.entity, ID: id, Kind: fxrepo.ErrNotFound}
		}
		return nil, err
	}
	return &v, nil
}

// Create inserts t and forgets a remembered not-found for its id.
func (r *Repository[T, ID]) Create(ctx context.Context, t *T) error {
	if err := r.Store.Create(ctx, t); err != nil {
		return err
	}
	r.invalidateEntity(ctx, t)
	return nil
}

// Update writes t, then invalidates it after the commit. A stale or
// missing row invalidates it too (the cache held an old version).
func (r *Repository[T, ID]) Update(ctx context.Context, t *T) error {
	err := r.Store.Update(ctx, t)
	if err == nil || errors.Is(err, fxrepo.ErrConflict) || errors.Is(err, fxrepo.ErrNotFound) {
		r.invalidateEntity(ctx, t)
	}
	return err
}

// Delete removes the row, then invalidates it after the commit.
func (r *Repository[T, ID]) Delete(ctx context.Context, id ID) error {
	err := r.Store.Delete(ctx, id)
	if err == nil || errors.Is(err, fxrepo.ErrNotFound) {
		r.cache.Delete(ctx, key(id))
	}
	return err
}

func (r *Repository[T, ID]) invalidateEntity(ctx context.Context, t *T) {
	if r.err != nil {
		return
	}
	id, zero := r.pk.ValueOf(ctx, reflect.ValueOf(t).Elem())
	if zero {
		return
	}
	r.cache.Delete(ctx, fmt.Sprint(id))
}

// Err is the error of a T the cache cannot key (no single primary key):
// then Create and Update invalidate nothing.
func (r *Repository[T, ID]) Err() error { return r.err }
