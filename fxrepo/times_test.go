package fxrepo_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/fx"
	"gorm.io/gorm"

	"github.com/martyfx/martyfx/fxrepo"
)

// Stamp has time values the service sets itself, as example/orders does.
type Stamp struct {
	ID        int64 `gorm:"primaryKey"`
	At        time.Time
	Maybe     *time.Time
	Null      sql.NullTime
	CreatedAt time.Time
	UpdatedAt time.Time
	// No foreign key: GORM's AutoMigrate does not order a has-many's
	// tables, and would create stamp_lines first half of the time.
	Lines []StampLine `gorm:"-:migration"`
}

// StampLine is created with its Stamp (an association).
type StampLine struct {
	ID      int64 `gorm:"primaryKey"`
	StampID int64
	At      time.Time
}

// nanos is a time with nanoseconds that PostgreSQL cannot keep.
func nanos(sec int64) time.Time { return time.Unix(sec, 123456789).UTC() }

func TestWrittenTimesEqualTheStoredOnes(t *testing.T) {
	t.Parallel()
	forEachDriver(t, func(t *testing.T, b backend) {
		t.Parallel()
		var db *gorm.DB
		startApp(t, b.env, fxrepo.AsModel(&Stamp{}, &StampLine{}), fx.Populate(&db))
		repo := fxrepo.NewRepository[Stamp, int64](db)
		ctx := context.Background()

		maybe := nanos(2)
		s := &Stamp{At: nanos(1), Maybe: &maybe, Null: sql.NullTime{Time: nanos(3), Valid: true},
			CreatedAt: nanos(4), UpdatedAt: nanos(4), Lines: []StampLine{{At: nanos(5)}}}
		require.NoError(t, repo.Create(ctx, s))
		// What the service answers with is what a read returns.
		require.Equal(t, 123456000, s.At.Nanosecond())
		require.Equal(t, 123456000, s.Maybe.Nanosecond())
		require.Equal(t, 123456000, s.Null.Time.Nanosecond())
		require.Equal(t, 123456000, s.CreatedAt.Nanosecond())
		require.Equal(t, 123456000, s.Lines[0].At.Nanosecond(), "associations too")
		got, err := repo.Get(ctx, s.ID)
		require.NoError(t, err)
		sameTime(t, s.At, got.At)
		sameTime(t, *s.Maybe, *got.Maybe)
		sameTime(t, s.Null.Time, got.Null.Time)
		sameTime(t, s.CreatedAt, got.CreatedAt)
		var line StampLine
		require.NoError(t, db.Take(&line, s.Lines[0].ID).Error)
		sameTime(t, s.Lines[0].At, line.At)

		// Update, Updates with a map, and Update of one column.
		got.At = nanos(10)
		require.NoError(t, repo.Update(ctx, got))
		require.Equal(t, 123456000, got.At.Nanosecond())
		again, err := repo.Get(ctx, s.ID)
		require.NoError(t, err)
		sameTime(t, got.At, again.At)

		require.NoError(t, db.Model(&Stamp{}).Where("id = ?", s.ID).Updates(map[string]any{"at": nanos(20)}).Error)
		require.NoError(t, db.Take(again, s.ID).Error)
		sameTime(t, nanos(20).Truncate(time.Microsecond), again.At)
		require.NoError(t, db.Model(&Stamp{ID: s.ID}).Update("at", nanos(30)).Error)
		require.NoError(t, db.Take(again, s.ID).Error)
		sameTime(t, nanos(30).Truncate(time.Microsecond), again.At)

		// Model(&a).Updates(&b): b's values are written, truncated.
		patch := &Stamp{At: nanos(40)}
		require.NoError(t, db.Model(&Stamp{ID: s.ID}).Updates(patch).Error)
		require.Equal(t, 123456000, patch.At.Nanosecond())
		require.NoError(t, db.Take(again, s.ID).Error)
		sameTime(t, patch.At, again.At)

		// A batch insert.
		batch := []Stamp{{At: nanos(50)}, {At: nanos(51)}}
		require.NoError(t, db.Create(&batch).Error)
		require.Equal(t, 123456000, batch[1].At.Nanosecond())
	})
}

func sameTime(t *testing.T, want, got time.Time) {
	t.Helper()
	require.True(t, want.Equal(got), "want %s, got %s", want.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
}
