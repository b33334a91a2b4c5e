package fxrepo_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/martyfx/martyfx/fxrepo"
)

func TestRedactError(t *testing.T) {
	t.Parallel()
	const pw = "p@ss/w:rd'x"
	cause := errors.New("dial failed")
	for name, dsn := range map[string]string{
		"url":      "postgres://app:" + url.PathEscape(pw) + "@db:5432/orders",
		"keyvalue": `host=db user=app password='p@ss/w:rd\'x' dbname=orders`,
		"query":    "postgres://app@db/orders?password=" + url.QueryEscape(pw),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// A driver error that quotes the DSN, the password as written
			// and decoded.
			err := fmt.Errorf("connect %s (password %q, %s): %w", dsn, pw, pw, cause)
			got := fxrepo.RedactError(err, dsn)
			require.NotContains(t, got.Error(), pw)
			require.NotContains(t, got.Error(), url.PathEscape(pw))
			require.NotContains(t, got.Error(), url.QueryEscape(pw))
			require.Contains(t, got.Error(), "xxxxx")
			require.ErrorIs(t, got, cause, "the chain is kept")
		})
	}

	// pgx's own connect error, on a closed port.
	dsn := "postgres://app:s3cr3t-pw@" + closedPort(t) + "/orders?sslmode=disable&connect_timeout=1"
	_, err := pgx.Connect(context.Background(), dsn)
	require.Error(t, err)
	got := fxrepo.RedactError(err, dsn)
	require.NotContains(t, got.Error(), "s3cr3t-pw")
	var pgErr *pgconn.ConnectError
	require.ErrorAs(t, got, &pgErr)

	require.NoError(t, fxrepo.RedactError(nil, dsn))
	require.Same(t, cause, fxrepo.RedactError(cause, dsn), "nothing to hide: the same error")
	require.Same(t, cause, fxrepo.RedactError(cause, ""))
}
