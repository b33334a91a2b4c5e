package fxtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
)

// ContractItem is the entity StoreContract exercises: an auto-assigned
// integer key, a unique name, a sort column with ties, optimistic locking,
// timestamps and soft delete.
type ContractItem struct {
	ID        int64  `gorm:"primaryKey"`
	Name      string `gorm:"uniqueIndex;not null"`
	Rank      int    `gorm:"not null"`
	Note      string
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
	DeletedAt gorm.DeletedAt `gorm:"index"`
}

// StoreContract runs the fxrepo.Store contract against the stores newStore
// returns (a new, empty store of ContractItem per call): the errors and
// semantics documented on fxrepo.Store. fxtest runs it against
// fxrepo.Repository (SQLite and PostgreSQL) and MemoryStore; run it against
// your own Store implementation to prove it is a faithful fake.
func StoreContract(t *testing.T, newStore func(t *testing.T) fxrepo.Store[ContractItem, int64]) {
	ctx := context.Background()
	check := func(t *testing.T, err error, want error, what string) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("%s: got error %v, want one that errors.Is %v", what, err, want)
		}
		var re *fxrepo.Error
		if !errors.As(err, &re) {
			t.Fatalf("%s: got %T (%v), want a *fxrepo.Error", what, err, err)
		}
	}
	mustCreate := func(t *testing.T, s fxrepo.Store[ContractItem, int64], name string, rank int) ContractItem {
		t.Helper()
		it := ContractItem{Name: name, Rank: rank}
		if err := s.Create(ctx, &it); err != nil {
			t.Fatalf("Create(%s): %v", name, err)
		}
		return it
	}

	t.Run("create fills the id, version and timestamps; get returns the row", func(t *testing.T) {
		s := newStore(t)
		before := time.Now().Add(-time.Second)
		a := mustCreate(t, s, "a", 1)
		b := mustCreate(t, s, "b", 2)
		if a.ID == 0 || b.ID == 0 || a.ID == b.ID {
			t.Fatalf("ids: got %d and %d, want two distinct non-zero ids", a.ID, b.ID)
		}
		if a.Version != 1 {
			t.Fatalf("Version after Create: got %d, want 1", a.Version)
		}
		if a.CreatedAt.Before(before) || a.UpdatedAt.Before(before) {
			t.Fatalf("timestamps not set: CreatedAt %v UpdatedAt %v", a.CreatedAt, a.UpdatedAt)
		}
		got, err := s.Get(ctx, a.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.ID != a.ID || got.Name != "a" || got.Rank != 1 || got.Version != 1 || got.DeletedAt.Valid {
			t.Fatalf("Get: got %+v, want %+v", *got, a)
		}
		if d := got.CreatedAt.Sub(a.CreatedAt).Abs(); d > time.Millisecond {
			t.Fatalf("Get: CreatedAt %v, created with %v", got.CreatedAt, a.CreatedAt)
		}
		if ok, err := s.Exists(ctx, a.ID); err != nil || !ok {
			t.Fatalf("Exists: got %v, %v; want true", ok, err)
		}
		if n, err := s.Count(ctx); err != nil || n != 2 {
			t.Fatalf("Count: got %d, %v; want 2", n, err)
		}
	})

	t.Run("duplicates are ErrConflict", func(t *testing.T) {
		s := newStore(t)
		a := mustCreate(t, s, "a", 1)
		err := s.Create(ctx, &ContractItem{Name: "a"})
		check(t, err, fxrepo.ErrConflict, "Create with a taken unique name")
		err = s.Create(ctx, &ContractItem{ID: a.ID, Name: "other"})
		check(t, err, fxrepo.ErrConflict, "Create with a taken id")
		if n, _ := s.Count(ctx); n != 1 {
			t.Fatalf("Count after failed creates: got %d, want 1", n)
		}
		b := mustCreate(t, s, "b", 1)
		b.Name = "a"
		err = s.Update(ctx, &b)
		check(t, err, fxrepo.ErrConflict, "Update to a taken unique name")
		var re *fxrepo.Error
		if errors.As(err, &re) && re.Stale {
			t.Fatalf("Update to a taken unique name: Stale is true, want false")
		}
	})

	t.Run("missing rows are ErrNotFound", func(t *testing.T) {
		s := newStore(t)
		_, err := s.Get(ctx, 424242)
		check(t, err, fxrepo.ErrNotFound, "Get of a missing id")
		err = s.Update(ctx, &ContractItem{ID: 424242, Name: "x", Version: 1})
		check(t, err, fxrepo.ErrNotFound, "Update of a missing id")
		err = s.Delete(ctx, 424242)
		check(t, err, fxrepo.ErrNotFound, "Delete of a missing id")
		if ok, err := s.Exists(ctx, 424242); err != nil || ok {
			t.Fatalf("Exists of a missing id: got %v, %v; want false", ok, err)
		}
		err = s.Update(ctx, &ContractItem{Name: "zero"})
		if err == nil || errors.Is(err, fxrepo.ErrNotFound) || errors.Is(err, fxrepo.ErrConflict) {
			t.Fatalf("Update with a zero id: got %v, want a plain error", err)
		}
	})

	t.Run("update writes the fields and bumps the version; stale versions conflict", func(t *testing.T) {
		s := newStore(t)
		a := mustCreate(t, s, "a", 1)
		created := a.CreatedAt
		stale := a
		a.Note, a.Rank = "changed", 7
		a.CreatedAt = time.Time{} // never written by Update
		if err := s.Update(ctx, &a); err != nil {
			t.Fatalf("Update: %v", err)
		}
		if a.Version != 2 {
			t.Fatalf("Version after Update: got %d, want 2", a.Version)
		}
		got, err := s.Get(ctx, a.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if got.Note != "changed" || got.Rank != 7 || got.Version != 2 {
			t.Fatalf("Get after Update: got %+v", *got)
		}
		if d := got.CreatedAt.Sub(created).Abs(); d > time.Millisecond {
			t.Fatalf("Update changed CreatedAt: %v, was %v", got.CreatedAt, created)
		}
		stale.Note = "lost update"
		err = s.Update(ctx, &stale)
		check(t, err, fxrepo.ErrConflict, "Update with a stale version")
		var re *fxrepo.Error
		if errors.As(err, &re) && !re.Stale {
			t.Fatalf("Update with a stale version: Stale is false, want true")
		}
		if stale.Version != 1 {
			t.Fatalf("a failed Update changed t: Version %d, want 1", stale.Version)
		}
		if got, _ := s.Get(ctx, a.ID); got.Note != "changed" {
			t.Fatalf("a stale Update was written: Note %q", got.Note)
		}
	})

	t.Run("delete is soft and final", func(t *testing.T) {
		s := newStore(t)
		a := mustCreate(t, s, "a", 1)
		mustCreate(t, s, "b", 1)
		if err := s.Delete(ctx, a.ID); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		_, err := s.Get(ctx, a.ID)
		check(t, err, fxrepo.ErrNotFound, "Get after Delete")
		check(t, s.Delete(ctx, a.ID), fxrepo.ErrNotFound, "second Delete")
		check(t, s.Update(ctx, &a), fxrepo.ErrNotFound, "Update after Delete")
		if ok, _ := s.Exists(ctx, a.ID); ok {
			t.Fatalf("Exists after Delete: true")
		}
		if n, _ := s.Count(ctx); n != 1 {
			t.Fatalf("Count after Delete: got %d, want 1", n)
		}
		// The soft-deleted row still holds its unique name, as in SQL.
		check(t, s.Create(ctx, &ContractItem{Name: "a"}), fxrepo.ErrConflict, "Create with a soft-deleted row's name")
		if p, err := s.List(ctx, fxrepo.ListOptions{}); err != nil || len(p.Items) != 1 || p.Items[0].Name != "b" {
			t.Fatalf("List after Delete: got %+v, %v; want only b", p.Items, err)
		}
	})

	t.Run("list pages in a stable order", func(t *testing.T) {
		s := newStore(t)
		ranks := []int{3, 1, 2, 1, 3, 2, 1}
		var all []ContractItem
		for i, r := range ranks {
			all = append(all, mustCreate(t, s, fmt.Sprintf("n%d", i), r))
		}
		cases := []struct {
			opts fxrepo.ListOptions
			want func(a, b ContractItem) bool
		}{
			{fxrepo.ListOptions{Limit: 3}, func(a, b ContractItem) bool { return a.ID < b.ID }},
			{fxrepo.ListOptions{Limit: 3, Desc: true}, func(a, b ContractItem) bool { return a.ID > b.ID }},
			{fxrepo.ListOptions{Limit: 2, OrderBy: "Rank"}, func(a, b ContractItem) bool {
				return a.Rank < b.Rank || a.Rank == b.Rank && a.ID < b.ID
			}},
			{fxrepo.ListOptions{Limit: 2, OrderBy: "rank", Desc: true}, func(a, b ContractItem) bool {
				return a.Rank > b.Rank || a.Rank == b.Rank && a.ID > b.ID
			}},
		}
		for _, c := range cases {
			var got []int64
			opts := c.opts
			for pages := 0; ; pages++ {
				if pages > len(all) {
					t.Fatalf("List(%+v): the cursor never ends", c.opts)
				}
				p, err := s.List(ctx, opts)
				if err != nil {
					t.Fatalf("List(%+v): %v", opts, err)
				}
				if len(p.Items) > c.opts.Limit {
					t.Fatalf("List(%+v): %d items, over the limit", opts, len(p.Items))
				}
				for _, it := range p.Items {
					got = append(got, it.ID)
				}
				if p.Next == "" {
					break
				}
				opts.Cursor = p.Next
			}
			want := append([]ContractItem(nil), all...)
			sortItems(want, c.want)
			if fmt.Sprint(idsOf(want)) != fmt.Sprint(got) {
				t.Fatalf("List(%+v) pages: got ids %v, want %v", c.opts, got, idsOf(want))
			}
		}
		p, err := s.List(ctx, fxrepo.ListOptions{})
		if err != nil || len(p.Items) != len(all) || p.Next != "" {
			t.Fatalf("List with the default limit: got %d items, next %q, %v", len(p.Items), p.Next, err)
		}
		if _, err := s.List(ctx, fxrepo.ListOptions{OrderBy: "nope"}); err == nil {
			t.Fatalf("List ordered by an unknown column: no error")
		}
		if _, err := s.List(ctx, fxrepo.ListOptions{Cursor: "!!"}); err == nil {
			t.Fatalf("List with a malformed cursor: no error")
		} else if c := fxcore.Classify(err).Class; c != fxcore.ClassInvalid {
			t.Fatalf("List with a malformed cursor: class %s, want %s (the client sent it)", c, fxcore.ClassInvalid)
		}
	})

	t.Run("rows inserted while paging never repeat or skip a row", func(t *testing.T) {
		s := newStore(t)
		var first []int64
		for i := range 6 {
			first = append(first, mustCreate(t, s, fmt.Sprintf("n%d", i), i%2).ID)
		}
		opts := fxrepo.ListOptions{Limit: 2, OrderBy: "Rank"}
		seen := map[int64]bool{}
		for page := 0; ; page++ {
			p, err := s.List(ctx, opts)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			for _, it := range p.Items {
				if seen[it.ID] {
					t.Fatalf("List: row %d repeated", it.ID)
				}
				seen[it.ID] = true
			}
			mustCreate(t, s, fmt.Sprintf("late%d", page), 0) // sorts before the cursor
			if p.Next == "" {
				break
			}
			opts.Cursor = p.Next
		}
		for _, id := range first {
			if !seen[id] {
				t.Fatalf("List skipped row %d (seen %v)", id, seen)
			}
		}
	})
}

func idsOf(items []ContractItem) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func sortItems(items []ContractItem, less func(a, b ContractItem) bool) {
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && less(items[j], items[j-1]); j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}
