package fxtest

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/schema"

	"github.com/martyfx/martyfx/fxrepo"
)

// MemoryStore is an in-memory fxrepo.Store for unit tests of code that takes
// a Store: the same rules as fxrepo.Repository (StoreContract checks both),
// read from the same GORM tags:
//
//   - an integer primary key left zero is assigned (1, 2, ... never reused);
//   - a duplicate primary key or unique index (uniqueIndex, unique tags;
//     soft-deleted rows included, as in SQL) is ErrConflict;
//   - an integer Version field is optimistic locking (1 on Create, +1 on
//     Update, ErrConflict with Stale on a mismatch);
//   - autoCreateTime / autoUpdateTime fields (CreatedAt, UpdatedAt) are set,
//     a gorm.DeletedAt field makes Delete a soft delete;
//   - fields that are not columns (associations, gorm:"-") are not kept.
//
// Differences, by design: Count and List refuse GORM scopes (they are SQL)
// with an error; unit-of-work transactions are ignored (nothing is rolled
// back); default:"..." tag values are not applied; stored values are shallow
// copies. Use the real Repository on the in-memory SQLite database of New
// when those matter.
type MemoryStore[T any, ID comparable] struct {
	mu      sync.Mutex
	entity  string
	err     error
	pk      *schema.Field
	version *schema.Field
	deleted *schema.Field
	created []*schema.Field
	updated []*schema.Field
	notCols []*schema.Field
	uniques [][]*schema.Field
	sch     *schema.Schema
	rows    map[ID]*T
	lastID  int64
	now     func() time.Time
}

var _ fxrepo.Store[struct{ ID int }, int] = (*MemoryStore[struct{ ID int }, int])(nil)

var schemaCache sync.Map

// NewMemoryStore returns an empty store of T. A T that GORM cannot map (not
// a struct, not exactly one primary key, a non-integer Version) makes every
// method return the error, like NewRepository.
func NewMemoryStore[T any, ID comparable]() *MemoryStore[T, ID] {
	s := &MemoryStore[T, ID]{entity: reflect.TypeFor[T]().Name(), rows: map[ID]*T{}, now: time.Now}
	if s.entity == "" {
		s.entity = reflect.TypeFor[T]().String()
	}
	sch, err := schema.Parse(new(T), &schemaCache, schema.NamingStrategy{})
	if err != nil {
		s.err = fmt.Errorf("fxtest: memory store of %s: %w", s.entity, err)
		return s
	}
	s.sch = sch
	if len(sch.PrimaryFields) != 1 {
		s.err = fmt.Errorf("fxtest: memory store of %s: want exactly one primary key field, found %d", s.entity, len(sch.PrimaryFields))
		return s
	}
	s.pk = sch.PrimaryFields[0]
	if s.pk.FieldType != reflect.TypeFor[ID]() {
		s.err = fmt.Errorf("fxtest: memory store of %s: the primary key %s is %s, not the ID type %s", s.entity, s.pk.Name, s.pk.FieldType, reflect.TypeFor[ID]())
		return s
	}
	if f := sch.LookUpField("Version"); f != nil && f.Name == "Version" {
		if !isInteger(f.FieldType.Kind()) {
			s.err = fmt.Errorf("fxtest: memory store of %s: field Version is %s, want an integer", s.entity, f.FieldType)
			return s
		}
		s.version = f
	}
	for _, f := range sch.Fields {
		switch {
		case f.FieldType == reflect.TypeFor[gorm.DeletedAt]():
			s.deleted = f
		case f.DBName == "":
			s.notCols = append(s.notCols, f)
		}
		if f.AutoCreateTime > 0 {
			s.created = append(s.created, f)
		}
		if f.AutoUpdateTime > 0 {
			s.updated = append(s.updated, f)
		}
		if f.Unique && !f.PrimaryKey {
			s.uniques = append(s.uniques, []*schema.Field{f})
		}
	}
	for _, idx := range sch.ParseIndexes() {
		if idx.Class != "UNIQUE" || idx.Where != "" {
			continue
		}
		var fields []*schema.Field
		for _, o := range idx.Fields {
			if o.Field != nil {
				fields = append(fields, o.Field)
			}
		}
		if len(fields) > 0 {
			s.uniques = append(s.uniques, fields)
		}
	}
	return s
}

func isInteger(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func (s *MemoryStore[T, ID]) idOf(ctx context.Context, rv reflect.Value) (ID, bool) {
	v, zero := s.pk.ValueOf(ctx, rv)
	id, _ := v.(ID)
	return id, zero
}

// live reports whether a stored row is not soft-deleted.
func (s *MemoryStore[T, ID]) live(ctx context.Context, row *T) bool {
	if s.deleted == nil {
		return true
	}
	v, _ := s.deleted.ValueOf(ctx, reflect.ValueOf(row).Elem())
	d, _ := v.(gorm.DeletedAt)
	return !d.Valid
}

// store keeps a copy of t with the non-column fields zeroed.
func (s *MemoryStore[T, ID]) store(ctx context.Context, id ID, t *T) {
	c := *t
	rv := reflect.ValueOf(&c).Elem()
	for _, f := range s.notCols {
		if fv := f.ReflectValueOf(ctx, rv); fv.CanSet() {
			fv.Set(reflect.Zero(fv.Type()))
		}
	}
	s.rows[id] = &c
}

// uniqueClash returns the unique index of t that another row (soft-deleted
// ones included) already holds, or "".
func (s *MemoryStore[T, ID]) uniqueClash(ctx context.Context, self ID, t *T) string {
	rv := reflect.ValueOf(t).Elem()
	for _, idx := range s.uniques {
		want := make([]any, len(idx))
		null := false
		for i, f := range idx {
			fv := f.ReflectValueOf(ctx, rv)
			if fv.Kind() == reflect.Pointer && fv.IsNil() {
				null = true // NULLs never clash in SQL
				break
			}
			want[i] = reflect.Indirect(fv).Interface()
		}
		if null {
			continue
		}
		for id, row := range s.rows {
			if id == self {
				continue
			}
			orv := reflect.ValueOf(row).Elem()
			same := true
			for i, f := range idx {
				fv := f.ReflectValueOf(ctx, orv)
				if fv.Kind() == reflect.Pointer && fv.IsNil() || !reflect.DeepEqual(reflect.Indirect(fv).Interface(), want[i]) {
					same = false
					break
				}
			}
			if same {
				names := make([]string, len(idx))
				for i, f := range idx {
					names[i] = s.sch.Table + "." + f.DBName
				}
				return strings.Join(names, ", ")
			}
		}
	}
	return ""
}

func (s *MemoryStore[T, ID]) conflict(op string, id any, what string) error {
	return &fxrepo.Error{Op: op, Entity: s.entity, ID: id, Kind: fxrepo.ErrConflict,
		Err: fmt.Errorf("UNIQUE constraint failed: %s", what)}
}

func (s *MemoryStore[T, ID]) notFound(op string, id any, withErr bool) error {
	e := &fxrepo.Error{Op: op, Entity: s.entity, ID: id, Kind: fxrepo.ErrNotFound}
	if withErr {
		e.Err = gorm.ErrRecordNotFound
	}
	return e
}

// Create inserts a copy of t (see fxrepo.Store).
func (s *MemoryStore[T, ID]) Create(ctx context.Context, t *T) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rv := reflect.ValueOf(t).Elem()
	if s.version != nil {
		if _, zero := s.version.ValueOf(ctx, rv); zero {
			if err := s.version.Set(ctx, rv, 1); err != nil {
				return fmt.Errorf("fxrepo: create %s: set Version: %w", s.entity, err)
			}
		}
	}
	id, zero := s.idOf(ctx, rv)
	c := *t
	crv := reflect.ValueOf(&c).Elem()
	if zero && isInteger(s.pk.FieldType.Kind()) {
		if err := s.pk.Set(ctx, crv, s.lastID+1); err != nil {
			return fmt.Errorf("fxrepo: create %s: set the id: %w", s.entity, err)
		}
		id, _ = s.idOf(ctx, crv)
	}
	var errID any = id
	if zero {
		errID = nil
	}
	if _, ok := s.rows[id]; ok {
		return s.conflict("create", errID, s.sch.Table+"."+s.pk.DBName)
	}
	if what := s.uniqueClash(ctx, id, &c); what != "" {
		return s.conflict("create", errID, what)
	}
	now := s.now()
	for _, f := range append(append([]*schema.Field{}, s.created...), s.updated...) {
		if _, z := f.ValueOf(ctx, crv); z {
			if err := f.Set(ctx, crv, now); err != nil {
				return fmt.Errorf("fxrepo: create %s: set %s: %w", s.entity, f.Name, err)
			}
		}
	}
	if isInteger(s.pk.FieldType.Kind()) {
		if n := reflect.ValueOf(id); n.CanInt() && n.Int() > s.lastID {
			s.lastID = n.Int()
		} else if n.CanUint() && int64(n.Uint()) > s.lastID {
			s.lastID = int64(n.Uint())
		}
	}
	*t = c
	s.store(ctx, id, t)
	return nil
}

// Get returns a copy of the entity with the id (see fxrepo.Store).
func (s *MemoryStore[T, ID]) Get(ctx context.Context, id ID) (*T, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	row, ok := s.rows[id]
	if !ok || !s.live(ctx, row) {
		return nil, s.notFound("get", id, true)
	}
	c := *row
	return &c, nil
}

// Update writes t to its row with optimistic locking on Version (see
// fxrepo.Store).
func (s *MemoryStore[T, ID]) Update(ctx context.Context, t *T) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rv := reflect.ValueOf(t).Elem()
	id, zero := s.idOf(ctx, rv)
	if zero {
		return fmt.Errorf("fxrepo: update %s: the primary key is zero (Create the entity first)", s.entity)
	}
	row, ok := s.rows[id]
	if !ok || !s.live(ctx, row) {
		return s.notFound("update", id, false)
	}
	orv := reflect.ValueOf(row).Elem()
	c := *t
	crv := reflect.ValueOf(&c).Elem()
	if s.version != nil {
		have, _ := s.version.ValueOf(ctx, orv)
		mine, _ := s.version.ValueOf(ctx, crv)
		if fmt.Sprint(have) != fmt.Sprint(mine) {
			return &fxrepo.Error{Op: "update", Entity: s.entity, ID: id, Kind: fxrepo.ErrConflict, Stale: true}
		}
		next := s.version.ReflectValueOf(ctx, crv)
		if next.CanInt() {
			next.SetInt(next.Int() + 1)
		} else {
			next.SetUint(next.Uint() + 1)
		}
	}
	if what := s.uniqueClash(ctx, id, &c); what != "" {
		return s.conflict("update", id, what)
	}
	now := s.now()
	for _, f := range s.updated {
		if err := f.Set(ctx, crv, now); err != nil {
			return fmt.Errorf("fxrepo: update %s: set %s: %w", s.entity, f.Name, err)
		}
	}
	// What Update never writes: the creation times and DeletedAt keep the
	// stored values.
	stored := c
	srv := reflect.ValueOf(&stored).Elem()
	keep := append([]*schema.Field{}, s.created...)
	if s.deleted != nil {
		keep = append(keep, s.deleted)
	}
	for _, f := range keep {
		f.ReflectValueOf(ctx, srv).Set(f.ReflectValueOf(ctx, orv))
	}
	*t = c
	s.store(ctx, id, &stored)
	return nil
}

// Delete removes the row, or soft-deletes it when T has a gorm.DeletedAt
// field (see fxrepo.Store).
func (s *MemoryStore[T, ID]) Delete(ctx context.Context, id ID) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	row, ok := s.rows[id]
	if !ok || !s.live(ctx, row) {
		return s.notFound("delete", id, false)
	}
	if s.deleted == nil {
		delete(s.rows, id)
		return nil
	}
	return s.deleted.Set(ctx, reflect.ValueOf(row).Elem(), gorm.DeletedAt{Time: s.now(), Valid: true})
}

// Count counts the rows that are not deleted. Scopes are refused with an
// error: they are SQL.
func (s *MemoryStore[T, ID]) Count(ctx context.Context, scopes ...fxrepo.Scope) (int64, error) {
	if s.err != nil {
		return 0, s.err
	}
	if len(scopes) > 0 {
		return 0, fmt.Errorf("fxtest: count %s: a MemoryStore cannot evaluate GORM scopes; use fxrepo.Repository on the test's SQLite database", s.entity)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, row := range s.rows {
		if s.live(ctx, row) {
			n++
		}
	}
	return n, nil
}

// Exists reports whether the id has a row that is not deleted.
func (s *MemoryStore[T, ID]) Exists(ctx context.Context, id ID) (bool, error) {
	if s.err != nil {
		return false, s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	row, ok := s.rows[id]
	return ok && s.live(ctx, row), nil
}

// List returns one page in the order of opts, with the Repository's cursor
// format (see fxrepo.Store and fxrepo.ListOptions). Scopes are refused.
func (s *MemoryStore[T, ID]) List(ctx context.Context, opts fxrepo.ListOptions) (fxrepo.Page[T], error) {
	if s.err != nil {
		return fxrepo.Page[T]{}, s.err
	}
	if len(opts.Scopes) > 0 {
		return fxrepo.Page[T]{}, fmt.Errorf("fxtest: list %s: a MemoryStore cannot evaluate GORM scopes; use fxrepo.Repository on the test's SQLite database", s.entity)
	}
	limit := opts.Limit
	switch {
	case limit <= 0:
		limit = fxrepo.DefaultPageSize
	case limit > fxrepo.MaxPageSize:
		limit = fxrepo.MaxPageSize
	}
	order := s.pk
	if opts.OrderBy != "" {
		order = s.sch.LookUpField(opts.OrderBy)
		if order == nil || order.DBName == "" {
			return fxrepo.Page[T]{}, fmt.Errorf("fxrepo: list %s: unknown order column %q", s.entity, opts.OrderBy)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	type keyed struct {
		val, id any
		row     *T
	}
	var rows []keyed
	for _, row := range s.rows {
		if !s.live(ctx, row) {
			continue
		}
		rv := reflect.ValueOf(row).Elem()
		id, _ := s.pk.ValueOf(ctx, rv)
		val, _ := order.ValueOf(ctx, rv)
		rows = append(rows, keyed{val: val, id: id, row: row})
	}
	less := func(av, aid, bv, bid any) bool {
		if order != s.pk {
			if c := compareValues(av, bv); c != 0 {
				return c < 0
			}
		}
		return compareValues(aid, bid) < 0
	}
	sort.Slice(rows, func(i, j int) bool {
		if opts.Desc {
			return less(rows[j].val, rows[j].id, rows[i].val, rows[i].id)
		}
		return less(rows[i].val, rows[i].id, rows[j].val, rows[j].id)
	})
	if opts.Cursor != "" {
		cval, cid, err := fxrepo.DecodeCursor(opts.Cursor, s.pk, order)
		if err != nil {
			return fxrepo.Page[T]{}, fmt.Errorf("fxrepo: list %s: %w", s.entity, err) // classified invalid
		}
		// Like the Repository: the cursor row's stored value when it still
		// exists (deleted or not), else the value the cursor carries.
		if id, ok := cid.(ID); ok && order != s.pk {
			if row, ok := s.rows[id]; ok {
				cval, _ = order.ValueOf(ctx, reflect.ValueOf(row).Elem())
			}
		}
		kept := rows[:0]
		for _, r := range rows {
			after := less(cval, cid, r.val, r.id)
			if opts.Desc {
				after = less(r.val, r.id, cval, cid)
			}
			if after {
				kept = append(kept, r)
			}
		}
		rows = kept
	}
	page := fxrepo.Page[T]{}
	for i, r := range rows {
		if i == limit {
			next, err := fxrepo.EncodeCursor(s.pk, order, rows[i-1].id, rows[i-1].val)
			if err != nil {
				return fxrepo.Page[T]{}, fmt.Errorf("fxrepo: list %s: %w", s.entity, err)
			}
			page.Next = next
			break
		}
		page.Items = append(page.Items, *r.row)
	}
	return page, nil
}

// compareValues orders two column values of the same Go type the way SQL
// does for the common types: numbers, strings (bytewise), booleans, times.
func compareValues(a, b any) int {
	av, bv := reflect.ValueOf(a), reflect.ValueOf(b)
	for av.Kind() == reflect.Pointer && !av.IsNil() {
		av = av.Elem()
	}
	for bv.Kind() == reflect.Pointer && !bv.IsNil() {
		bv = bv.Elem()
	}
	if ta, ok := av.Interface().(time.Time); ok {
		tb, _ := bv.Interface().(time.Time)
		return ta.Compare(tb)
	}
	switch {
	case av.CanInt() && bv.CanInt():
		return cmp3(av.Int(), bv.Int())
	case av.CanUint() && bv.CanUint():
		return cmp3(av.Uint(), bv.Uint())
	case av.CanFloat() && bv.CanFloat():
		return cmp3(av.Float(), bv.Float())
	case av.Kind() == reflect.String && bv.Kind() == reflect.String:
		return strings.Compare(av.String(), bv.String())
	case av.Kind() == reflect.Bool && bv.Kind() == reflect.Bool:
		return cmp3(b2i(av.Bool()), b2i(bv.Bool()))
	case av.Kind() == reflect.Slice && av.Type().Elem().Kind() == reflect.Uint8 && bv.Kind() == reflect.Slice:
		return bytes.Compare(av.Bytes(), bv.Bytes())
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

func cmp3[N int64 | uint64 | float64](a, b N) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
