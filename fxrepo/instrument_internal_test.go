package fxrepo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOperation(t *testing.T) {
	t.Parallel()
	for query, want := range map[string]string{
		"SELECT * FROM widgets":                                   "select",
		"  \n\tinsert INTO widgets VALUES (1)":                    "insert",
		";; Update widgets SET x = 1":                             "update",
		"/* app: orders */ DELETE FROM notes":                     "delete",
		"-- a line comment\nWITH x AS (SELECT 1) SELECT * FROM x": "with",
		"(SELECT 1) UNION (SELECT 2)":                             "select",
		"/**/--\n/* two */ savepoint sp1":                         "savepoint",
		"MERGE INTO t USING s ON true":                            "merge",
		"":                                                        "",
		"/* never closed":                                         "",
		"-- only a comment":                                       "",
		"  ":                                                      "",
		"$1":                                                      "",
	} {
		require.Equal(t, want, operation(query), "%q", query)
	}
}

// The usual keywords cost no allocation, whatever their case.
func TestOperationAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		_ = operation("/* c */ SELECT * FROM widgets")
		_ = operation("Insert into widgets values (1)")
	})
	require.Zero(t, allocs)
}
