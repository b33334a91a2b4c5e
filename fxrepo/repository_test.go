package fxrepo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
)

func TestCRUD(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()

		w := &Widget{Name: "bolt", Color: "red"}
		require.NoError(t, f.widgets.Create(ctx, w))
		require.NotZero(t, w.ID)
		require.EqualValues(t, 1, w.Version, "a new entity starts at version 1")
		require.False(t, w.CreatedAt.IsZero())

		got, err := f.widgets.Get(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, "bolt", got.Name)
		require.EqualValues(t, 1, got.Version)
		require.True(t, w.CreatedAt.Equal(got.CreatedAt))

		time.Sleep(2 * time.Millisecond)
		got.Color = "blue"
		require.NoError(t, f.widgets.Update(ctx, got))
		require.EqualValues(t, 2, got.Version, "Update increments the version in the entity")
		again, err := f.widgets.Get(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, "blue", again.Color)
		require.EqualValues(t, 2, again.Version)
		require.True(t, again.UpdatedAt.After(w.UpdatedAt), "UpdatedAt moves")
		require.True(t, again.CreatedAt.Equal(w.CreatedAt), "CreatedAt is kept")

		// A zero value is written too (Update writes every field).
		again.Color = ""
		require.NoError(t, f.widgets.Update(ctx, again))
		zeroed, err := f.widgets.Get(ctx, w.ID)
		require.NoError(t, err)
		require.Equal(t, "", zeroed.Color)

		ok, err := f.widgets.Exists(ctx, w.ID)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, f.widgets.Create(ctx, &Widget{Name: "nut", Color: "red"}))
		n, err := f.widgets.Count(ctx)
		require.NoError(t, err)
		require.EqualValues(t, 2, n)
		n, err = f.widgets.Count(ctx, func(db *gorm.DB) *gorm.DB { return db.Where("color = ?", "red") })
		require.NoError(t, err)
		require.EqualValues(t, 1, n)

		// Soft delete: gone for the repository, still in the table.
		require.NoError(t, f.widgets.Delete(ctx, w.ID))
		_, err = f.widgets.Get(ctx, w.ID)
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
		ok, err = f.widgets.Exists(ctx, w.ID)
		require.NoError(t, err)
		require.False(t, ok)
		var raw int64
		require.NoError(t, f.db.Unscoped().Model(&Widget{}).Where("id = ?", w.ID).Count(&raw).Error)
		require.EqualValues(t, 1, raw, "soft-deleted row is kept")
		require.ErrorIs(t, f.widgets.Delete(ctx, w.ID), fxrepo.ErrNotFound)
		require.ErrorIs(t, f.widgets.Update(ctx, again), fxrepo.ErrNotFound, "a soft-deleted row cannot be updated")

		// Hard delete and string keys.
		require.NoError(t, f.notes.Create(ctx, &Note{ID: "n-1", Body: "hello"}))
		note, err := f.notes.Get(ctx, "n-1")
		require.NoError(t, err)
		note.Body = "bye"
		require.NoError(t, f.notes.Update(ctx, note))
		require.NoError(t, f.notes.Delete(ctx, "n-1"))
		require.NoError(t, f.db.Unscoped().Model(&Note{}).Count(&raw).Error)
		require.Zero(t, raw)
		require.ErrorIs(t, f.notes.Update(ctx, &Note{ID: "missing"}), fxrepo.ErrNotFound)
		require.ErrorContains(t, f.notes.Update(ctx, &Note{}), "primary key is zero")
	})
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		_, err := f.widgets.Get(ctx, 404)
		require.ErrorIs(t, err, fxrepo.ErrNotFound)
		require.ErrorIs(t, err, gorm.ErrRecordNotFound, "GORM's sentinel stays in the chain")
		require.NotErrorIs(t, err, fxrepo.ErrConflict)
		require.EqualError(t, err, "fxrepo: get Widget 404: not found")
		var re *fxrepo.Error
		require.ErrorAs(t, err, &re)
		require.Equal(t, "Widget", re.Entity)
		require.EqualValues(t, 404, re.ID)

		c := fxcore.Classify(fmt.Errorf("handler: %w", err))
		require.Equal(t, fxcore.ClassNotFound, c.Class, "through wrapping too")
		require.Equal(t, "Widget 404 not found", c.Message)
		c = fxcore.Classify(fmt.Errorf("x: %w", fxrepo.ErrNotFound))
		require.Equal(t, fxcore.ClassNotFound, c.Class, "the sentinel wrapped by user code")
		require.Equal(t, "not found", c.Message, "clients never read the package name")
		require.EqualError(t, fxrepo.ErrNotFound, "fxrepo: not found", "the sentinel says its package")
		require.EqualError(t, fxrepo.ErrConflict, "fxrepo: conflict")
		c = fxcore.Classify(fmt.Errorf("x: %w", fxrepo.ErrConflict))
		require.Equal(t, fxcore.ClassAlreadyExists, c.Class)
		require.Equal(t, "already exists", c.Message)
		require.Equal(t, fxcore.ClassUnknown, fxcore.Classify(errors.New("other")).Class)
		var ok bool

		require.ErrorIs(t, f.widgets.Delete(ctx, 404), fxrepo.ErrNotFound)
		require.ErrorIs(t, f.widgets.Update(ctx, &Widget{ID: 404, Name: "x", Version: 1}), fxrepo.ErrNotFound)
		ok, err = f.widgets.Exists(ctx, 404)
		require.NoError(t, err)
		require.False(t, ok)
	})
}

func TestUniqueConflict(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		require.NoError(t, f.widgets.Create(ctx, &Widget{Name: "dup"}))
		err := f.widgets.Create(ctx, &Widget{Name: "dup"})
		require.ErrorIs(t, err, fxrepo.ErrConflict)
		require.True(t, fxrepo.IsUniqueViolation(err))
		require.ErrorContains(t, err, "fxrepo: create Widget: conflict")
		c := fxcore.Classify(err)
		require.Equal(t, fxcore.ClassAlreadyExists, c.Class)
		require.Equal(t, "Widget already exists", c.Message, "no driver text")
		var re *fxrepo.Error
		require.ErrorAs(t, err, &re)
		require.False(t, re.Stale)

		// Duplicate primary key, with the id in the error.
		require.NoError(t, f.notes.Create(ctx, &Note{ID: "k"}))
		err = f.notes.Create(ctx, &Note{ID: "k"})
		require.ErrorIs(t, err, fxrepo.ErrConflict)
		require.ErrorContains(t, err, "fxrepo: create Note k: conflict")

		// An update that collides with another row's unique key.
		other := &Widget{Name: "other"}
		require.NoError(t, f.widgets.Create(ctx, other))
		other.Name = "dup"
		require.ErrorIs(t, f.widgets.Update(ctx, other), fxrepo.ErrConflict)
		require.EqualValues(t, 1, other.Version, "a failed update leaves the entity as it was")
	})
}

func TestStaleVersionConflict(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		w := &Widget{Name: "contested"}
		require.NoError(t, f.widgets.Create(ctx, w))

		// Two requests read version 1, then race to write in their own
		// transactions: one wins, the other gets a stale conflict.
		race := func(read func(ctx context.Context) (*Widget, error), inTx bool) []error {
			var wg sync.WaitGroup
			var readers sync.WaitGroup
			readers.Add(2)
			errs := make([]error, 2)
			for i := range 2 {
				wg.Go(func() {
					color := fmt.Sprintf("color-%d", i)
					if !inTx {
						mine, err := read(ctx)
						readers.Done()
						if err != nil {
							errs[i] = err
							return
						}
						readers.Wait()
						errs[i] = f.uow.Do(ctx, func(ctx context.Context) error {
							mine.Color = color
							return f.widgets.Update(ctx, mine)
						})
						return
					}
					errs[i] = f.uow.Do(ctx, func(ctx context.Context) error {
						mine, err := read(ctx)
						readers.Done()
						if err != nil {
							return err
						}
						readers.Wait() // both transactions have read version N
						mine.Color = color
						return f.widgets.Update(ctx, mine)
					})
				})
			}
			wg.Wait()
			return errs
		}
		check := func(errs []error) {
			t.Helper()
			var ok, stale int
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case errors.Is(err, fxrepo.ErrConflict):
					stale++
					var re *fxrepo.Error
					require.ErrorAs(t, err, &re)
					require.True(t, re.Stale, "%v", err)
					require.Equal(t, fxcore.ClassAborted, fxcore.Classify(err).Class)
					require.ErrorContains(t, err, "stale version")
				default:
					t.Fatalf("unexpected error: %v", err)
				}
			}
			require.Equal(t, 1, ok)
			require.Equal(t, 1, stale)
		}
		get := func(ctx context.Context) (*Widget, error) { return f.widgets.Get(ctx, w.ID) }
		check(race(get, false))
		final, err := f.widgets.Get(ctx, w.ID)
		require.NoError(t, err)
		require.EqualValues(t, 2, final.Version)

		if b.driver == "postgres" {
			// Real interleaving inside two open transactions: the loser's
			// UPDATE waits for the winner's row lock, then matches no row.
			check(race(get, true))
			final, err = f.widgets.Get(ctx, w.ID)
			require.NoError(t, err)
			require.EqualValues(t, 3, final.Version)
		}
	})
}

func TestKeysetPagination(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		f := newFixture(t, b)
		ctx := context.Background()
		colors := []string{"red", "green", "blue"}
		for i := range 25 {
			require.NoError(t, f.widgets.Create(ctx, &Widget{Name: fmt.Sprintf("w%02d", i), Color: colors[i%3]}))
		}
		var before []Widget
		require.NoError(t, f.db.Order("id").Find(&before).Error)

		// By primary key, with inserts between pages.
		var seen []int64
		opts := fxrepo.ListOptions{Limit: 10}
		for page := 0; ; page++ {
			p, err := f.widgets.List(ctx, opts)
			require.NoError(t, err)
			require.LessOrEqual(t, len(p.Items), 10)
			for _, w := range p.Items {
				seen = append(seen, w.ID)
			}
			require.NoError(t, f.widgets.Create(ctx, &Widget{Name: fmt.Sprintf("late%d", page), Color: "green"}))
			if p.Next == "" {
				break
			}
			opts.Cursor = p.Next
			require.Less(t, page, 10, "pagination must end")
		}
		requireUniqueSuperset(t, seen, ids(before))
		require.True(t, slices.IsSorted(seen))

		// By a non-unique column (ties broken by id), descending, with
		// rows inserted in the middle of the order between pages.
		var ordered []Widget
		require.NoError(t, f.db.Order("color desc, id desc").Find(&ordered).Error)
		var got []Widget
		opts = fxrepo.ListOptions{Limit: 7, OrderBy: "color", Desc: true}
		for page := 0; ; page++ {
			p, err := f.widgets.List(ctx, opts)
			require.NoError(t, err)
			got = append(got, p.Items...)
			require.NoError(t, f.widgets.Create(ctx, &Widget{Name: fmt.Sprintf("mid%d", page), Color: "green"}))
			if p.Next == "" {
				break
			}
			opts.Cursor = p.Next
			require.Less(t, page, 20, "pagination must end")
		}
		requireUniqueSuperset(t, ids(got), ids(ordered))
		require.True(t, slices.IsSortedFunc(got, func(a, b Widget) int {
			if a.Color != b.Color {
				return -cmpString(a.Color, b.Color)
			}
			return -int(a.ID - b.ID)
		}), "order is color desc, id desc")

		// Filters as scopes, and the cursor of a row deleted meanwhile.
		red := func(db *gorm.DB) *gorm.DB { return db.Where("color = ?", "red") }
		p, err := f.widgets.List(ctx, fxrepo.ListOptions{Limit: 3, OrderBy: "Name", Scopes: []fxrepo.Scope{red}})
		require.NoError(t, err)
		require.Len(t, p.Items, 3)
		for _, w := range p.Items {
			require.Equal(t, "red", w.Color)
		}
		require.NoError(t, f.widgets.Delete(ctx, p.Items[2].ID))
		p2, err := f.widgets.List(ctx, fxrepo.ListOptions{Limit: 3, OrderBy: "Name", Scopes: []fxrepo.Scope{red}, Cursor: p.Next})
		require.NoError(t, err)
		require.NotEmpty(t, p2.Items)
		require.Greater(t, p2.Items[0].Name, p.Items[2].Name, "continues after the deleted cursor row")

		// Defaults, caps and bad input.
		p, err = f.widgets.List(ctx, fxrepo.ListOptions{})
		require.NoError(t, err)
		require.LessOrEqual(t, len(p.Items), fxrepo.DefaultPageSize)
		_, err = f.widgets.List(ctx, fxrepo.ListOptions{Cursor: "!!not-a-cursor"})
		require.ErrorContains(t, err, "fxrepo: list Widget: invalid page cursor")
		require.Equal(t, fxcore.ClassInvalid, fxcore.Classify(err).Class, "a bad cursor is the client's to fix")
		_, err = f.widgets.List(ctx, fxrepo.ListOptions{OrderBy: "color; DROP TABLE widgets"})
		require.ErrorContains(t, err, `unknown order column "color; DROP TABLE widgets"`)
		_, err = f.widgets.List(ctx, fxrepo.ListOptions{OrderBy: "color", Cursor: mustCursor(t, f)})
		require.ErrorContains(t, err, "cursor does not match the order")
	})
}

// mustCursor returns a primary-key cursor.
func mustCursor(t *testing.T, f *fixture) string {
	p, err := f.widgets.List(context.Background(), fxrepo.ListOptions{Limit: 1})
	require.NoError(t, err)
	require.NotEmpty(t, p.Next)
	return p.Next
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ids(ws []Widget) []int64 {
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

// requireUniqueSuperset: no id twice, every id of want present, in want's order.
func requireUniqueSuperset(t *testing.T, got, want []int64) {
	t.Helper()
	pos := map[int64]int{}
	for i, id := range got {
		_, dup := pos[id]
		require.False(t, dup, "id %d listed twice", id)
		pos[id] = i
	}
	last := -1
	for _, id := range want {
		i, ok := pos[id]
		require.True(t, ok, "id %d skipped", id)
		require.Greater(t, i, last, "id %d out of order", id)
		last = i
	}
}

func TestRepositoryRejectsUnmappableTypes(t *testing.T) {
	t.Parallel()
	var db *gorm.DB
	startApp(t, []string{"MARTY_DB_DSN=:memory:"}, fx.Populate(&db))
	type twoKeys struct {
		A int `gorm:"primaryKey"`
		B int `gorm:"primaryKey"`
	}
	_, err := fxrepo.NewRepository[twoKeys, int](db).Get(context.Background(), 1)
	require.ErrorContains(t, err, "want exactly one primary key field, found 2")
	type badVersion struct {
		ID      int
		Version string
	}
	require.ErrorContains(t, fxrepo.NewRepository[badVersion, int](db).Create(context.Background(), &badVersion{}),
		"field Version is string, want an integer")
}
