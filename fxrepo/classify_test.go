package fxrepo_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxcore"
	"github.com/martyfx/martyfx/fxrepo"
	"github.com/martyfx/martyfx/internal/pgtest"
)

type Parent struct {
	ID int64 `gorm:"primaryKey"`
}

type Child struct {
	ID       int64  `gorm:"primaryKey"`
	ParentID int64  `gorm:"not null"`
	Parent   Parent `gorm:"constraint:OnDelete:RESTRICT"`
	Name     string `gorm:"uniqueIndex;not null;check:name_not_blank,name <> ''"`
	Qty      int16
	Note     *string
}

// classify is what a server does with an error a handler returns.
func classify(err error) fxcore.Classification { return fxcore.Classify(err, fxrepo.Classify) }

// TestClassifyDatabaseErrors: errors from real statements, on both
// drivers, get a class and a message that holds no driver text.
func TestClassifyDatabaseErrors(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		var db *gorm.DB
		f := newFixture(t, b)
		db = f.db
		require.NoError(t, db.AutoMigrate(&Parent{}, &Child{}))
		ctx := context.Background()
		require.NoError(t, db.Create(&Parent{ID: 1}).Error)
		require.NoError(t, db.Create(&Child{ID: 1, ParentID: 1, Name: "a"}).Error)

		cases := []struct {
			name string
			err  error
			want fxcore.ErrorClass
			msg  string
		}{
			{"unique", db.Create(&Child{ID: 2, ParentID: 1, Name: "a"}).Error, fxcore.ClassAlreadyExists, "already exists"},
			{"foreign key", db.Create(&Child{ID: 3, ParentID: 99, Name: "b"}).Error, fxcore.ClassFailedPrecondition, "referenced"},
			{"still referenced", db.Delete(&Parent{ID: 1}).Error, fxcore.ClassFailedPrecondition, "referenced"},
			{"check", db.Create(&Child{ID: 4, ParentID: 1, Name: ""}).Error, fxcore.ClassInvalid, "rule"},
			{"not null", db.Exec("INSERT INTO children (id, parent_id) VALUES (5, 1)").Error, fxcore.ClassInvalid, "required value is missing"},
			{"raw not found", db.WithContext(ctx).Take(&Child{}, 404).Error, fxcore.ClassNotFound, "not found"},
		}
		if b.driver == "postgres" {
			nul := "bad\x00name"
			cases = append(cases,
				struct {
					name string
					err  error
					want fxcore.ErrorClass
					msg  string
				}{"NUL byte", db.Create(&Child{ID: 6, ParentID: 1, Name: "n", Note: &nul}).Error, fxcore.ClassInvalid, "SQLSTATE 22021, character_not_in_repertoire"},
				struct {
					name string
					err  error
					want fxcore.ErrorClass
					msg  string
				}{"out of range", db.Exec("INSERT INTO children (id, parent_id, name, qty) VALUES (7, 1, 'q', 70000)").Error, fxcore.ClassInvalid, "out of range"},
				struct {
					name string
					err  error
					want fxcore.ErrorClass
					msg  string
				}{"bad format", db.Exec("SELECT 'x'::int").Error, fxcore.ClassInvalid, "wrong format"},
			)
		}
		for _, c := range cases {
			require.Error(t, c.err, c.name)
			got := classify(fmt.Errorf("handler: %w", c.err))
			require.Equal(t, c.want, got.Class, "%s: %v", c.name, c.err)
			require.Contains(t, got.Message, c.msg, c.name)
			for _, internal := range []string{"children", "invalid byte sequence", "UTF8", "violates check", "violates foreign", "violates unique", "SQL logic", "ERROR", "idx_"} {
				require.NotContains(t, got.Message, internal, c.name)
			}
		}

		// The repository's own errors name the entity.
		err := f.widgets.Create(ctx, &Widget{Name: "dup"})
		require.NoError(t, err)
		got := classify(f.widgets.Create(ctx, &Widget{Name: "dup"}))
		require.Equal(t, fxcore.ClassAlreadyExists, got.Class)
		require.Equal(t, "Widget already exists", got.Message)

		// A bug (a missing table) is not classified: internal error.
		got = classify(db.Exec("SELECT * FROM no_such_table").Error)
		require.Equal(t, fxcore.ClassUnknown, got.Class)
		require.Equal(t, "internal error", got.Message)
	})
}

// TestClassifyUnavailable: a database that refuses connections is
// unavailable, and the message names no host, user or database.
func TestClassifyUnavailable(t *testing.T) {
	dsn := pgtest.NewDatabase(t)
	addr := closedPort(t)
	down := strings.Replace(dsn, "127.0.0.1:5432", addr, 1)
	require.NotEqual(t, dsn, down)
	cfg := fxrepo.DefaultConfig()
	cfg.Driver, cfg.DSN, cfg.ConnectTimeout = fxrepo.DriverPostgres, down, 50*time.Millisecond
	d, err := fxrepo.NewDatabase(cfg, fxrepo.DatabaseOptions{})
	require.NoError(t, err, "NewDatabase does not connect")
	err = d.Start(context.Background())
	require.Error(t, err)
	require.Contains(t, err.Error(), addr, "the start error names the address, for the operator")
	got := classify(err)
	require.Equal(t, fxcore.ClassUnavailable, got.Class)
	require.Equal(t, fxrepo.MessageUnavailable, got.Message)
	require.Equal(t, time.Second, got.RetryAfter)
}

func TestClassifySynthetic(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want fxcore.ErrorClass
	}{
		{&pgconn.PgError{Code: "57P01"}, fxcore.ClassUnavailable},
		{&pgconn.PgError{Code: "57P03"}, fxcore.ClassUnavailable},
		{&pgconn.PgError{Code: "08006"}, fxcore.ClassUnavailable},
		{&pgconn.PgError{Code: "53300"}, fxcore.ClassUnavailable},
		{&pgconn.PgError{Code: "25006"}, fxcore.ClassUnavailable},
		{&pgconn.PgError{Code: "40001"}, fxcore.ClassAborted},
		{&pgconn.PgError{Code: "40P01"}, fxcore.ClassAborted},
		{&pgconn.PgError{Code: "55P03"}, fxcore.ClassAborted},
		{&pgconn.PgError{Code: "22021"}, fxcore.ClassInvalid},
		{&pgconn.PgError{Code: "22999"}, fxcore.ClassInvalid},
		{&pgconn.PgError{Code: "23505"}, fxcore.ClassAlreadyExists},
		{&pgconn.PgError{Code: "23503"}, fxcore.ClassFailedPrecondition},
		{&pgconn.PgError{Code: "57014"}, fxcore.ClassDeadlineExceeded},
		{&pgconn.PgError{Code: "42P01"}, fxcore.ClassUnknown},
		{pgconn.ErrConnClosed, fxcore.ClassUnavailable},
		{driver.ErrBadConn, fxcore.ClassUnavailable},
		{sql.ErrConnDone, fxcore.ClassUnavailable},
		{gorm.ErrRecordNotFound, fxcore.ClassNotFound},
		{gorm.ErrDuplicatedKey, fxcore.ClassAlreadyExists},
		{fmt.Errorf("query: %w", context.Canceled), fxcore.ClassCanceled},
		{errors.New("anything else"), fxcore.ClassUnknown},
	} {
		got := classify(fmt.Errorf("x: %w", c.err))
		require.Equal(t, c.want, got.Class, "%v", c.err)
	}
	_, _, ok := fxrepo.Classify(nil)
	require.False(t, ok)
}
