package fxrepo

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/martyfx/martyfx/fxcore"
)

// Scope is a GORM scope: a filter (or any query change) applied to a query.
type Scope = func(*gorm.DB) *gorm.DB

// Page sizes for List.
const (
	// DefaultPageSize is used when ListOptions.Limit is 0.
	DefaultPageSize = 50
	// MaxPageSize caps ListOptions.Limit.
	MaxPageSize = 1000
)

// Store is what a service needs from a repository of T keyed by ID. The
// GORM-backed *Repository satisfies it; tests may swap in a fake. The
// semantics every implementation keeps:
//
//   - Create inserts t, filling generated fields (id, timestamps) in t; a
//     duplicate primary or unique key is ErrConflict. When T has an integer
//     Version field and it is 0, it becomes 1.
//   - Get returns the entity with the id, ErrNotFound when there is none or
//     it is soft-deleted.
//   - Update writes every field of t (except the primary key, the
//     creation time, DeletedAt and associations) to the row with t's id. When T has a Version field the
//     row must still hold t.Version: then it is incremented (in t too);
//     else ErrConflict (stale). No row: ErrNotFound. On error t is unchanged.
//   - Delete removes the row with the id (sets DeletedAt when T has a
//     gorm.DeletedAt field); ErrNotFound when there is none.
//   - List returns one page in a stable total order (ListOptions.OrderBy,
//     then the primary key), and a cursor to the next page; rows inserted
//     while paging never make a page repeat or skip a row that existed.
//   - Count counts the rows the scopes select; Exists reports whether the
//     id has a (not deleted) row.
//
// Errors are *Error values that errors.Is ErrNotFound or ErrConflict.
// Scopes are GORM scopes: a Store that is not SQL-backed may refuse the
// scopes it cannot evaluate with an error. All methods join the unit of
// work's transaction in ctx.
type Store[T any, ID comparable] interface {
	Create(ctx context.Context, t *T) error
	Get(ctx context.Context, id ID) (*T, error)
	Update(ctx context.Context, t *T) error
	Delete(ctx context.Context, id ID) error
	List(ctx context.Context, opts ListOptions) (Page[T], error)
	Count(ctx context.Context, scopes ...Scope) (int64, error)
	Exists(ctx context.Context, id ID) (bool, error)
}

// ListOptions selects one page of a List.
type ListOptions struct {
	// Limit is the page size: 0 means DefaultPageSize, more than
	// MaxPageSize means MaxPageSize.
	Limit int
	// Cursor is Page.Next from the previous page; "" is the first page.
	// A cursor is only valid with the same OrderBy, Desc and Scopes.
	Cursor string
	// OrderBy is a column (or Go field name) to sort by before the primary
	// key; "" sorts by the primary key only. The column should be NOT NULL.
	OrderBy string
	// Desc sorts descending.
	Desc bool
	// Scopes filter the rows (e.g. func(db *gorm.DB) *gorm.DB { return db.Where("status = ?", "open") }).
	Scopes []Scope
}

// Page is one page of a List.
type Page[T any] struct {
	// Items in order; at most the limit.
	Items []T
	// Next is the cursor of the next page, "" when this is the last one.
	Next string
}

// Repository is a GORM-backed Store for T (a struct with a single primary
// key of type ID). Optimistic locking is on when T has an integer field
// named Version; soft delete when T has a gorm.DeletedAt field. Every
// method goes through DB(ctx, db), so it joins the unit of work in ctx.
type Repository[T any, ID comparable] struct {
	db      *gorm.DB
	entity  string
	schema  *schema.Schema
	pk      *schema.Field
	version *schema.Field
	omit    []string
	err     error
}

var _ Store[struct{ ID int }, int] = (*Repository[struct{ ID int }, int])(nil)

// NewRepository returns the repository of T on db. A T GORM cannot map
// (not a struct, no single primary key, a non-integer Version) makes every
// method return the error.
func NewRepository[T any, ID comparable](db *gorm.DB) *Repository[T, ID] {
	r := &Repository[T, ID]{db: db, entity: reflect.TypeFor[T]().Name()}
	if r.entity == "" {
		r.entity = reflect.TypeFor[T]().String()
	}
	stmt := &gorm.Statement{DB: db}
	if err := stmt.Parse(new(T)); err != nil {
		r.err = fmt.Errorf("fxrepo: repository of %s: %w", r.entity, err)
		return r
	}
	r.schema = stmt.Schema
	if len(r.schema.PrimaryFields) != 1 {
		r.err = fmt.Errorf("fxrepo: repository of %s: want exactly one primary key field, found %d", r.entity, len(r.schema.PrimaryFields))
		return r
	}
	r.pk = r.schema.PrimaryFields[0]
	if f := r.schema.LookUpField("Version"); f != nil && f.Name == "Version" {
		switch f.FieldType.Kind() {
		case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
			r.version = f
		default:
			r.err = fmt.Errorf("fxrepo: repository of %s: field Version is %s, want an integer", r.entity, f.FieldType)
			return r
		}
	}
	r.omit = []string{r.pk.Name, clause.Associations}
	for _, f := range r.schema.Fields {
		if f.AutoCreateTime > 0 || f.FieldType == reflect.TypeFor[gorm.DeletedAt]() {
			r.omit = append(r.omit, f.Name)
		}
	}
	return r
}

// Query returns a query on T's table that joins the unit of work in ctx,
// for what the repository does not cover.
func (r *Repository[T, ID]) Query(ctx context.Context) *gorm.DB {
	return DB(ctx, r.db).Model(new(T))
}

// Create inserts t (see Store).
func (r *Repository[T, ID]) Create(ctx context.Context, t *T) error {
	if r.err != nil {
		return r.err
	}
	rv := reflect.ValueOf(t).Elem()
	if r.version != nil {
		if _, zero := r.version.ValueOf(ctx, rv); zero {
			if err := r.version.Set(ctx, rv, 1); err != nil {
				return fmt.Errorf("fxrepo: create %s: set Version: %w", r.entity, err)
			}
		}
	}
	if err := DB(ctx, r.db).Create(t).Error; err != nil {
		id, zero := r.pk.ValueOf(ctx, rv)
		if zero {
			id = nil
		}
		return r.wrap("create", id, err)
	}
	return nil
}

// Get returns the entity with the id (see Store).
func (r *Repository[T, ID]) Get(ctx context.Context, id ID) (*T, error) {
	if r.err != nil {
		return nil, r.err
	}
	t := new(T)
	if err := DB(ctx, r.db).Where(r.pkEq(id)).Take(t).Error; err != nil {
		return nil, r.wrap("get", id, err)
	}
	return t, nil
}

// Update writes t to its row, with optimistic locking on Version (see Store).
func (r *Repository[T, ID]) Update(ctx context.Context, t *T) error {
	if r.err != nil {
		return r.err
	}
	rv := reflect.ValueOf(t).Elem()
	id, zero := r.pk.ValueOf(ctx, rv)
	if zero {
		return fmt.Errorf("fxrepo: update %s: the primary key is zero (Create the entity first)", r.entity)
	}
	q := DB(ctx, r.db).Model(t).Select("*").Omit(r.omit...).Where(r.pkEq(id))
	if r.version == nil {
		res := q.Updates(t)
		if res.Error != nil {
			return r.wrap("update", id, res.Error)
		}
		if res.RowsAffected == 0 {
			return &Error{Op: "update", Entity: r.entity, ID: id, Kind: ErrNotFound}
		}
		return nil
	}
	oldV := r.version.ReflectValueOf(ctx, rv)
	old := reflect.ValueOf(oldV.Interface()) // a copy
	next := reflect.New(old.Type()).Elem()
	if old.CanInt() {
		next.SetInt(old.Int() + 1)
	} else {
		next.SetUint(old.Uint() + 1)
	}
	oldV.Set(next)
	res := q.Where(clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.version.DBName}, Value: old.Interface()}).Updates(t)
	if res.Error == nil && res.RowsAffected > 0 {
		return nil
	}
	oldV.Set(old)
	if res.Error != nil {
		return r.wrap("update", id, res.Error)
	}
	exists, err := r.exists(ctx, id)
	if err != nil {
		return r.wrap("update", id, err)
	}
	if exists {
		return &Error{Op: "update", Entity: r.entity, ID: id, Kind: ErrConflict, Stale: true}
	}
	return &Error{Op: "update", Entity: r.entity, ID: id, Kind: ErrNotFound}
}

// Delete removes (or soft-deletes) the row with the id (see Store).
func (r *Repository[T, ID]) Delete(ctx context.Context, id ID) error {
	if r.err != nil {
		return r.err
	}
	res := DB(ctx, r.db).Where(r.pkEq(id)).Delete(new(T))
	if res.Error != nil {
		return r.wrap("delete", id, res.Error)
	}
	if res.RowsAffected == 0 {
		return &Error{Op: "delete", Entity: r.entity, ID: id, Kind: ErrNotFound}
	}
	return nil
}

// Count counts the rows the scopes select (all rows without scopes).
func (r *Repository[T, ID]) Count(ctx context.Context, scopes ...Scope) (int64, error) {
	if r.err != nil {
		return 0, r.err
	}
	var n int64
	if err := DB(ctx, r.db).Model(new(T)).Scopes(scopes...).Count(&n).Error; err != nil {
		return 0, fmt.Errorf("fxrepo: count %s: %w", r.entity, err)
	}
	return n, nil
}

// Exists reports whether the id has a (not deleted) row.
func (r *Repository[T, ID]) Exists(ctx context.Context, id ID) (bool, error) {
	if r.err != nil {
		return false, r.err
	}
	ok, err := r.exists(ctx, id)
	if err != nil {
		return false, r.wrap("exists", id, err)
	}
	return ok, nil
}

func (r *Repository[T, ID]) exists(ctx context.Context, id any) (bool, error) {
	var n int64
	err := DB(ctx, r.db).Model(new(T)).Where(r.pkEq(id)).Limit(1).Count(&n).Error
	return n > 0, err
}

// List returns one page (see Store and ListOptions).
func (r *Repository[T, ID]) List(ctx context.Context, opts ListOptions) (Page[T], error) {
	if r.err != nil {
		return Page[T]{}, r.err
	}
	limit := opts.Limit
	switch {
	case limit <= 0:
		limit = DefaultPageSize
	case limit > MaxPageSize:
		limit = MaxPageSize
	}
	order := r.pk
	if opts.OrderBy != "" {
		order = r.schema.LookUpField(opts.OrderBy)
		if order == nil || order.DBName == "" {
			return Page[T]{}, fmt.Errorf("fxrepo: list %s: unknown order column %q", r.entity, opts.OrderBy)
		}
	}
	q := DB(ctx, r.db).Model(new(T)).Scopes(opts.Scopes...)
	pkCol := clause.Column{Table: clause.CurrentTable, Name: r.pk.DBName}
	orderCol := clause.Column{Table: clause.CurrentTable, Name: order.DBName}
	if opts.Cursor != "" {
		val, id, err := r.decodeCursor(opts.Cursor, order)
		if err != nil {
			return Page[T]{}, fmt.Errorf("fxrepo: list %s: %w", r.entity, err)
		}
		op := ">"
		if opts.Desc {
			op = "<"
		}
		if order == r.pk {
			q = q.Where(clause.Expr{SQL: "? " + op + " ?", Vars: []any{pkCol, id}})
		} else {
			// Compare with the cursor row's stored value when it still
			// exists (exact whatever the driver's value encoding), else
			// with the value the cursor carries.
			q = q.Where(clause.Expr{
				SQL: "(?, ?) " + op + " (COALESCE((SELECT ? FROM ? WHERE ? = ?), ?), ?)",
				Vars: []any{orderCol, pkCol,
					clause.Column{Name: order.DBName}, clause.Table{Name: r.schema.Table}, clause.Column{Name: r.pk.DBName}, id,
					val, id},
			})
		}
	}
	cols := []clause.OrderByColumn{}
	if order != r.pk {
		cols = append(cols, clause.OrderByColumn{Column: orderCol, Desc: opts.Desc})
	}
	cols = append(cols, clause.OrderByColumn{Column: pkCol, Desc: opts.Desc})
	var items []T
	if err := q.Order(clause.OrderBy{Columns: cols}).Limit(limit + 1).Find(&items).Error; err != nil {
		return Page[T]{}, fmt.Errorf("fxrepo: list %s: %w", r.entity, err)
	}
	page := Page[T]{Items: items}
	if len(items) > limit {
		page.Items = items[:limit]
		last := reflect.ValueOf(&page.Items[limit-1]).Elem()
		next, err := r.encodeCursor(ctx, last, order)
		if err != nil {
			return Page[T]{}, fmt.Errorf("fxrepo: list %s: %w", r.entity, err)
		}
		page.Next = next
	}
	return page, nil
}

func (r *Repository[T, ID]) encodeCursor(ctx context.Context, row reflect.Value, order *schema.Field) (string, error) {
	id, _ := r.pk.ValueOf(ctx, row)
	val, _ := order.ValueOf(ctx, row)
	return EncodeCursor(r.pk, order, id, val)
}

func (r *Repository[T, ID]) decodeCursor(cursor string, order *schema.Field) (val, id any, err error) {
	return DecodeCursor(cursor, r.pk, order)
}

// EncodeCursor encodes a keyset cursor for a page ending at the row whose
// primary key is id and whose order column holds val (ignored when the list
// is ordered by the primary key). Stores other than Repository, such as
// fxtest.MemoryStore, use it so that their cursors are the same.
func EncodeCursor(pk, order *schema.Field, id, val any) (string, error) {
	parts := []any{id}
	if order != pk {
		parts = append(parts, val)
	}
	b, err := json.Marshal(parts)
	if err != nil {
		return "", fmt.Errorf("encode cursor: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// DecodeCursor decodes a cursor made by EncodeCursor into the order column's
// value (nil when ordered by the primary key) and the primary key, typed as
// the fields are. Its error is classified fxcore.ClassInvalid ("invalid page
// cursor: not a cursor of this listing"): the client sent it.
func DecodeCursor(cursor string, pk, order *schema.Field) (val, id any, err error) {
	val, id, err = decodeCursor(cursor, pk, order)
	if err != nil {
		return nil, nil, fxcore.NewError(fxcore.ClassInvalid, "invalid page cursor: not a cursor of this listing",
			fmt.Errorf("invalid cursor: %w", err))
	}
	return val, id, nil
}

func decodeCursor(cursor string, pk, order *schema.Field) (val, id any, err error) {
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return nil, nil, err
	}
	var parts []json.RawMessage
	if err := json.Unmarshal(b, &parts); err != nil {
		return nil, nil, err
	}
	want := 1
	if order != pk {
		want = 2
	}
	if len(parts) != want {
		return nil, nil, errors.New("cursor does not match the order")
	}
	idPtr := reflect.New(pk.FieldType)
	if err := json.Unmarshal(parts[0], idPtr.Interface()); err != nil {
		return nil, nil, err
	}
	id = idPtr.Elem().Interface()
	if want == 2 {
		vPtr := reflect.New(order.FieldType)
		if err := json.Unmarshal(parts[1], vPtr.Interface()); err != nil {
			return nil, nil, err
		}
		val = vPtr.Elem().Interface()
	}
	return val, id, nil
}

func (r *Repository[T, ID]) pkEq(id any) clause.Expression {
	return clause.Eq{Column: clause.Column{Table: clause.CurrentTable, Name: r.pk.DBName}, Value: id}
}

// wrap classifies a driver error for one entity.
func (r *Repository[T, ID]) wrap(op string, id any, err error) error {
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		return &Error{Op: op, Entity: r.entity, ID: id, Kind: ErrNotFound, Err: err}
	case IsUniqueViolation(err):
		return &Error{Op: op, Entity: r.entity, ID: id, Kind: ErrConflict, Err: err}
	}
	if id == nil {
		return fmt.Errorf("fxrepo: %s %s: %w", op, r.entity, err)
	}
	return fmt.Errorf("fxrepo: %s %s %v: %w", op, r.entity, id, err)
}
