package fxcore

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// envMapper turns the MARTY_* variables a section's config reads into its
// keys: MARTY_GRPC_TLS_CERT_FILE is tls.cert_file of section grpc, and
// MARTY_GRPC_CLIENTS_ORDERS_TARGET is clients.orders.target (a
// map[string]Struct field takes any entry name between its own name and the
// struct's field).
type envMapper struct {
	prefix string            // MARTY_ or MARTY_<SECTION>_
	exact  map[string]string // variable -> key
	maps   []envMap
}

type envMap struct {
	prefix string    // MARTY_GRPC_CLIENTS_
	key    string    // clients
	leaves []envLeaf // the struct's fields, longest suffix first
}

type envLeaf struct{ suffix, key string } // "_TLS_CA_FILE", "tls.ca_file"

func newEnvMapper(section string, fields []field) envMapper {
	m := envMapper{prefix: EnvPrefix, exact: map[string]string{}}
	if section != "" {
		m.prefix = EnvPrefix + strings.ToUpper(section) + "_"
	}
	for _, f := range fields {
		name := EnvName(section, f.key)
		if !f.isMap {
			m.exact[name] = f.key
			continue
		}
		em := envMap{prefix: name + "_", key: f.key}
		for _, leaf := range f.elem {
			em.leaves = append(em.leaves, envLeaf{suffix: "_" + envWord(leaf.key), key: leaf.key})
		}
		slices.SortFunc(em.leaves, func(a, b envLeaf) int { return cmp.Compare(len(b.suffix), len(a.suffix)) })
		m.maps = append(m.maps, em)
	}
	return m
}

// envWord is a key as it appears in a variable name: tls.cert_file is TLS_CERT_FILE.
func envWord(key string) string { return strings.ToUpper(strings.ReplaceAll(key, ".", "_")) }

// key returns the config key of variable name, or "" when the config does
// not read it.
func (m envMapper) key(name string) string {
	if k, ok := m.exact[name]; ok {
		return k
	}
	for _, em := range m.maps {
		rest, ok := strings.CutPrefix(name, em.prefix)
		if !ok {
			continue
		}
		for _, leaf := range em.leaves {
			if entry, ok := strings.CutSuffix(rest, leaf.suffix); ok && entry != "" {
				return em.key + "." + strings.ToLower(entry) + "." + leaf.key
			}
		}
	}
	return ""
}

// nearest returns the variable this mapper reads that is closest to name
// (for a map field, with name's own entry name), and its edit distance.
func (m envMapper) nearest(name string) (string, int) {
	best, dist := "", -1
	consider := func(candidate string) {
		if d := levenshtein(name, candidate); dist < 0 || d < dist || d == dist && candidate < best {
			best, dist = candidate, d
		}
	}
	for known := range m.exact {
		consider(known)
	}
	for _, em := range m.maps {
		rest, ok := strings.CutPrefix(name, em.prefix)
		if !ok {
			continue
		}
		// Try each split of the rest into <entry>_<field>.
		for i := 1; i < len(rest); i++ {
			if rest[i] != '_' {
				continue
			}
			for _, leaf := range em.leaves {
				consider(em.prefix + rest[:i] + leaf.suffix)
			}
		}
	}
	return best, dist
}

// notConfig are the MARTY_ variables that are not module configuration, so
// no Load reads them and start never warns about them: the config file's
// name, and what tests and their tools read (MARTY_TEST_*, the browser
// tests' MARTY_ARTIFACTS_DIR).
var (
	notConfig       = []string{ConfigFileEnv, "MARTY_ARTIFACTS_DIR"}
	notConfigPrefix = []string{"MARTY_TEST_"}
)

// maxSuggestDistance is how many edits away the nearest known variable may
// be to be suggested ("did you mean ...?").
const maxSuggestDistance = 3

// unknownVar is a MARTY_* variable no config read and nobody looked up.
type unknownVar struct {
	name    string
	suggest string // nearest known variable, "" when none is close
	secret  bool   // it, or the variable it resembles, names a secret
}

// unknownEnv lists, sorted, the MARTY_* variables of the environment that no
// Load read and no Env call looked up, with the nearest known name.
func (s *Source) unknownEnv() []unknownVar {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []unknownVar
	for name := range s.env {
		if !strings.HasPrefix(name, EnvPrefix) || s.read[name] || isNotConfig(name) || s.readsLocked(name) {
			continue
		}
		u := unknownVar{name: name, secret: secretName(name)}
		best, dist := "", -1
		for _, m := range s.known {
			if c, d := m.nearest(name); c != "" && (dist < 0 || d < dist || d == dist && c < best) {
				best, dist = c, d
			}
		}
		if best != "" && dist <= maxSuggestDistance {
			u.suggest = best
			u.secret = u.secret || secretName(best)
		}
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b unknownVar) int { return cmp.Compare(a.name, b.name) })
	return out
}

func (s *Source) readsLocked(name string) bool {
	for _, m := range s.known {
		if m.key(name) != "" {
			return true
		}
	}
	return false
}

func isNotConfig(name string) bool {
	if slices.Contains(notConfig, name) {
		return true
	}
	return slices.ContainsFunc(notConfigPrefix, func(p string) bool { return strings.HasPrefix(name, p) })
}

// secretName reports a variable name that holds a secret: one of its
// words contains TOKEN, PASSW(OR)D, SECRET, CREDENTIAL or DSN, or ends in KEY
// (KEY, APIKEY; so MARTY_HTTP_TLS_KEY_FILE counts, MONKEYS does not).
func secretName(name string) bool {
	for word := range strings.SplitSeq(strings.TrimPrefix(name, EnvPrefix), "_") {
		for _, s := range []string{"TOKEN", "PASSWORD", "PASSWD", "SECRET", "CREDENTIAL", "DSN"} {
			if strings.Contains(word, s) {
				return true
			}
		}
		if strings.HasSuffix(word, "KEY") {
			return true
		}
	}
	return false
}

// checkEnv warns about every MARTY_* variable no module read, with the
// nearest known name. In production an unknown variable that names a
// secret, or resembles a known one that does, fails the start: a misspelt
// MARTY_HTTP_ADMIN_TOKEN must not leave the admin server open.
func checkEnv(src *Source, info ServiceInfo, log *zap.Logger) error {
	var fatal []string
	for _, u := range src.unknownEnv() {
		fields := []zap.Field{zap.String("variable", u.name)}
		hint := ""
		if u.suggest != "" {
			fields = append(fields, zap.String("did_you_mean", u.suggest))
			hint = fmt.Sprintf(" (did you mean %s?)", u.suggest)
		}
		log.Warn("no module reads this environment variable; is it misspelt?", fields...)
		if u.secret && info.IsProduction() {
			fatal = append(fatal, u.name+hint)
		}
	}
	if len(fatal) == 0 {
		return nil
	}
	return fmt.Errorf("fxcore: no module reads %s; in production a variable that looks like a secret must be read: fix its name or remove it",
		strings.Join(fatal, ", "))
}

// levenshtein is the edit distance between two ASCII strings.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
