// Package confkey matches names (of health checks, circuit breakers) with
// the keys of fxmonitor's config, where an environment variable spells
// them in upper case with "_" for the "-", "." or " " a name may have.
package confkey

import "strings"

// Key returns name as a config key: lower case, with "-", "." and " " read
// as "_". Two names match a key when their Keys are equal.
func Key(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r == ' ' {
			return '_'
		}
		return r
	}, strings.ToLower(name))
}
