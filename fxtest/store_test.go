package fxtest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/fxtest"
)

func repoStore(t *testing.T) fxrepo.Store[fxtest.ContractItem, int64] {
	t.Helper()
	app := fxtest.New(t, fxtest.WithModules(fxcore.Module, fxrepo.Module), fxrepo.AsModel(&fxtest.ContractItem{}))
	return fxrepo.NewRepository[fxtest.ContractItem, int64](app.DB())
}

func TestStoreContractMemory(t *testing.T) {
	t.Parallel()
	fxtest.StoreContract(t, func(*testing.T) fxrepo.Store[fxtest.ContractItem, int64] {
		return fxtest.NewMemoryStore[fxtest.ContractItem, int64]()
	})
}

func TestStoreContractSQLite(t *testing.T) {
	t.Parallel()
	fxtest.StoreContract(t, repoStore)
}

func TestStoreContractPostgres(t *testing.T) {
	t.Parallel()
	fxtest.StoreContract(t, func(t *testing.T) fxrepo.Store[fxtest.ContractItem, int64] {
		app := fxtest.New(t, fxtest.Postgres(t), fxtest.WithModules(fxcore.Module, fxrepo.Module), fxrepo.AsModel(&fxtest.ContractItem{}))
		return fxrepo.NewRepository[fxtest.ContractItem, int64](app.DB())
	})
}

func TestMemoryStoreRefusesScopesAndBadTypes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := fxtest.NewMemoryStore[fxtest.ContractItem, int64]()
	_, err := s.Count(ctx, func(db *gorm.DB) *gorm.DB { return db.Where("rank = 1") })
	require.ErrorContains(t, err, "cannot evaluate GORM scopes")
	_, err = s.List(ctx, fxrepo.ListOptions{Scopes: []fxrepo.Scope{func(db *gorm.DB) *gorm.DB { return db }}})
	require.ErrorContains(t, err, "cannot evaluate GORM scopes")

	type noKey struct{ A, B int }
	bad := fxtest.NewMemoryStore[noKey, int]()
	require.ErrorContains(t, bad.Create(ctx, &noKey{}), "want exactly one primary key field")

	type wrongID struct{ ID string }
	_, err = fxtest.NewMemoryStore[wrongID, int]().Get(ctx, 1)
	require.ErrorContains(t, err, "not the ID type int")

	type badVersion struct {
		ID      int
		Version string
	}
	require.ErrorContains(t, fxtest.NewMemoryStore[badVersion, int]().Create(ctx, &badVersion{}), "field Version is string, want an integer")
}

// TestMemoryStoreKeepsOnlyColumns: fields that are not columns are not
// stored, string keys are not generated, NULL never clashes.
func TestMemoryStoreKeepsOnlyColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type item struct {
		Code  string  `gorm:"primaryKey"`
		Email *string `gorm:"unique"`
		Cache string  `gorm:"-"`
	}
	s := fxtest.NewMemoryStore[item, string]()
	require.NoError(t, s.Create(ctx, &item{Code: "a", Cache: "scratch"}))
	require.NoError(t, s.Create(ctx, &item{Code: "b"}), "two NULL emails do not clash")
	got, err := s.Get(ctx, "a")
	require.NoError(t, err)
	require.Empty(t, got.Cache)
	mail := "x@example.com"
	require.NoError(t, s.Create(ctx, &item{Code: "c", Email: &mail}))
	other := "x@example.com"
	require.ErrorIs(t, s.Create(ctx, &item{Code: "d", Email: &other}), fxrepo.ErrConflict)
	require.NoError(t, s.Create(ctx, &item{}), "an empty string key is a key")
	require.ErrorIs(t, s.Create(ctx, &item{}), fxrepo.ErrConflict)
	require.NoError(t, s.Delete(ctx, "b"))
	_, err = s.Get(ctx, "b")
	require.ErrorIs(t, err, fxrepo.ErrNotFound, "a hard delete without DeletedAt")
	require.NoError(t, s.Create(ctx, &item{Code: "b"}), "a hard-deleted key is free again")
}
