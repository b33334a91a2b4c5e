package fxcore

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"
)

// EnvPrefix starts every environment variable martyfx reads.
const EnvPrefix = "MARTY_"

// ConfigFileEnv names the optional YAML configuration file.
const ConfigFileEnv = "MARTY_CONFIG_FILE"

// Validator is implemented by every module's Config.
type Validator interface {
	Validate() error
}

// Source is where configuration comes from: defaults in code, then an
// optional YAML file (one section per module), then environment variables
// MARTY_<SECTION>_<FIELD>. One Source is shared by every module of an app.
//
// The Source remembers what was read: the sections Load loaded (and the
// variables their configs read) and the variables looked up with Env, so
// that at start fxcore.Module can warn about file sections and MARTY_*
// variables no module read.
type Source struct {
	path    string
	file    *koanf.Koanf
	environ []string          // os.Environ form
	env     map[string]string // the same, by name

	mu    sync.Mutex
	used  map[string]bool      // sections loaded
	read  map[string]bool      // variables looked up with Env
	known map[string]envMapper // by section: the variables its config reads
}

// NewSource reads MARTY_CONFIG_FILE (when set) and the process environment.
// A file that was asked for but is missing, unreadable or not YAML is an error.
func NewSource() (*Source, error) {
	return NewSourceFrom(os.Getenv(ConfigFileEnv), os.Environ())
}

// NewSourceFrom builds a Source from a file path ("" for none) and an
// environment in os.Environ form. Tests use it to avoid touching the process.
func NewSourceFrom(path string, environ []string) (*Source, error) {
	s := &Source{
		path: path, env: map[string]string{},
		used: map[string]bool{}, read: map[string]bool{}, known: map[string]envMapper{},
	}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			s.env[k] = v
			s.environ = append(s.environ, kv)
		}
	}
	if path != "" {
		k := koanf.New(".")
		if err := k.Load(file.Provider(path), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("fxcore: read config file %s (%s): %w", path, ConfigFileEnv, err)
		}
		s.file = k
	}
	return s, nil
}

// Env returns an environment variable as the Source sees it. A MARTY_*
// variable looked up here counts as read: start does not warn about it.
func (s *Source) Env(name string) (string, bool) {
	s.mu.Lock()
	s.read[name] = true
	s.mu.Unlock()
	v, ok := s.env[name]
	return v, ok
}

// File returns the config file path, or "" when none was given.
func (s *Source) File() string { return s.path }

// UnusedSections lists the top-level sections of the config file that no
// module loaded: usually a typo or a module missing from the app.
func (s *Source) UnusedSections() []string {
	if s.file == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, v := range s.file.Raw() {
		if _, isSection := v.(map[string]any); isSection && !s.used[name] {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// field is one configurable leaf of a Config struct.
type field struct {
	key   string       // koanf path inside the section: "tls.cert_file"
	typ   reflect.Type // the Go type
	isMap bool         // a map[string]T: keys below it are free-form names
	elem  []field      // for maps of structs: the leaves of T
}

// Load returns cfg (holding the defaults) overlaid with the section of the
// config file and then the environment, validated. section "" is the top level
// (MARTY_<FIELD>, scalar keys at the top of the file).
func Load[T Validator](src *Source, section string, cfg T) (T, error) {
	var zero T
	if src == nil {
		return zero, errors.New("fxcore: nil config Source")
	}
	rv := reflect.ValueOf(&cfg).Elem()
	for rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return zero, fmt.Errorf("fxcore: config for section %q: defaults are a nil %s", section, rv.Type())
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return zero, fmt.Errorf("fxcore: config for section %q must be a struct, got %s", section, rv.Type())
	}
	fields := leaves(rv.Type(), "")
	mapper := newEnvMapper(section, fields)
	src.mu.Lock()
	src.used[section] = true
	src.known[section] = mapper
	src.mu.Unlock()

	merged := map[string]any{}    // flat key -> raw value
	origin := map[string]string{} // flat key -> where it came from

	if src.file != nil {
		if err := src.fromFile(section, fields, merged, origin); err != nil {
			return zero, err
		}
	}
	if err := src.fromEnv(mapper, merged, origin); err != nil {
		return zero, err
	}

	if len(merged) > 0 {
		if err := decode(rv.Addr().Interface(), merged); err != nil {
			return zero, explain(rv, merged, origin, fields, err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return zero, src.explainInvalid(section, err, origin)
	}
	return cfg, nil
}

// EnvName is the environment variable for a key of a section.
func EnvName(section, key string) string {
	name := strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
	if section == "" {
		return EnvPrefix + name
	}
	return EnvPrefix + strings.ToUpper(section) + "_" + name
}

func (s *Source) fromFile(section string, fields []field, merged map[string]any, origin map[string]string) error {
	var raw map[string]any
	if section == "" {
		raw = map[string]any{}
		for k, v := range s.file.Raw() {
			if _, isMap := v.(map[string]any); !isMap {
				raw[k] = v
			}
		}
	} else {
		v := s.file.Get(section)
		if v == nil {
			return nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("fxcore: config file %s: %q must be a mapping of settings, got %T", s.path, section, v)
		}
		raw = m
	}
	flat := map[string]any{}
	flatten(raw, "", fields, flat)
	var unknown []string
	for k, v := range flat {
		if !known(fields, k) {
			unknown = append(unknown, k)
			continue
		}
		merged[k] = v
		origin[k] = qualified(section, k) + "\x00" + s.path
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		var names []string
		for _, f := range fields {
			names = append(names, f.key)
		}
		where := "at the top level"
		if section != "" {
			where = fmt.Sprintf("in section %q", section)
		}
		return fmt.Errorf("fxcore: config file %s: unknown key %q %s (known keys: %s)",
			s.path, unknown[0], where, strings.Join(names, ", "))
	}
	return nil
}

// fromEnv overlays the variables the section's config reads, through
// koanf's env provider; mapper turns each MARTY_ name into the config key.
func (s *Source) fromEnv(mapper envMapper, merged map[string]any, origin map[string]string) error {
	k := koanf.New(".")
	provider := env.Provider(".", env.Opt{
		Prefix:      mapper.prefix,
		EnvironFunc: func() []string { return s.environ },
		TransformFunc: func(name, value string) (string, any) {
			key := mapper.key(name)
			if key != "" {
				origin[key] = name
			}
			return key, value
		},
	})
	if err := k.Load(provider, nil); err != nil {
		return fmt.Errorf("fxcore: read the environment: %w", err)
	}
	maps.Copy(merged, k.All())
	return nil
}

func qualified(section, key string) string {
	if section == "" {
		return key
	}
	return section + "." + key
}

// known reports whether a flat key from the file belongs to the config.
func known(fields []field, key string) bool {
	for _, f := range fields {
		if f.key == key {
			return true
		}
		if !f.isMap {
			continue
		}
		rest, ok := strings.CutPrefix(key, f.key+".")
		if !ok {
			continue
		}
		if len(f.elem) == 0 {
			return !strings.Contains(rest, ".")
		}
		_, leaf, ok := strings.Cut(rest, ".")
		if ok && slices.ContainsFunc(f.elem, func(e field) bool { return e.key == leaf }) {
			return true
		}
	}
	return false
}

// flatten turns nested maps into dotted keys, stopping at leaves the config
// declares (so a map-valued leaf stays whole only when it is a map field).
func flatten(m map[string]any, prefix string, fields []field, out map[string]any) {
	for k, v := range m {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok && !isScalarMapLeaf(fields, key) {
			if len(sub) == 0 {
				out[key] = v
				continue
			}
			flatten(sub, key, fields, out)
			continue
		}
		out[key] = v
	}
}

func isScalarMapLeaf(fields []field, key string) bool {
	for _, f := range fields {
		if f.key == key && f.isMap && len(f.elem) == 0 {
			return true
		}
	}
	return false
}

// leaves lists the configurable leaves of a struct type by their koanf tags.
func leaves(t reflect.Type, prefix string) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := sf.Tag.Get("koanf")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		ft := sf.Type
		switch {
		case ft.Kind() == reflect.Struct && !isValueStruct(ft):
			out = append(out, leaves(ft, key)...)
		case ft.Kind() == reflect.Map && ft.Key().Kind() == reflect.String:
			f := field{key: key, typ: ft, isMap: true}
			if et := ft.Elem(); et.Kind() == reflect.Struct && !isValueStruct(et) {
				f.elem = leaves(et, "")
			}
			out = append(out, f)
		default:
			out = append(out, field{key: key, typ: ft})
		}
	}
	return out
}

func isValueStruct(t reflect.Type) bool {
	return t == reflect.TypeOf(time.Time{})
}

func decoderConfig(out any) *mapstructure.DecoderConfig {
	return &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			mapstructure.StringToSliceHookFunc(","),
			mapstructure.TextUnmarshallerHookFunc(),
		),
		Metadata:         nil,
		Result:           out,
		WeaklyTypedInput: true,
		TagName:          "koanf",
		ErrorUnused:      false,
	}
}

// durationHook accepts Go duration strings only: a bare YAML number would
// otherwise silently become nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return time.ParseDuration(strings.TrimSpace(v))
	case time.Duration:
		return v, nil
	default:
		return nil, fmt.Errorf("not a duration: %v", data)
	}
}

func decode(out any, flat map[string]any) error {
	nested := map[string]any{}
	for k, v := range flat {
		parts := strings.Split(k, ".")
		m := nested
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v
	}
	dec, err := mapstructure.NewDecoder(decoderConfig(out))
	if err != nil {
		return err
	}
	return dec.Decode(nested)
}

// explain finds which key failed to decode, decoding them one at a time.
func explain(rv reflect.Value, merged map[string]any, origin map[string]string, fields []field, cause error) error {
	keys := make([]string, 0, len(merged))
	for k := range merged {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		probe := reflect.New(rv.Type())
		probe.Elem().Set(rv)
		if err := decode(probe.Interface(), map[string]any{k: merged[k]}); err != nil {
			return located(origin[k], &FieldError{Key: k, Value: merged[k], Want: wantFor(fields, k), Err: err})
		}
	}
	return fmt.Errorf("fxcore: invalid configuration (%s): %w", strings.Join(keys, ", "), cause)
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("%v", v)
}

func wantFor(fields []field, key string) string {
	var t reflect.Type
	for _, f := range fields {
		if f.key == key {
			t = f.typ
			break
		}
		if rest, ok := strings.CutPrefix(key, f.key+"."); ok && f.isMap {
			t = f.typ.Elem()
			if _, leaf, ok := strings.Cut(rest, "."); ok {
				for _, e := range f.elem {
					if e.key == leaf {
						t = e.typ
					}
				}
			}
		}
	}
	if t == nil {
		return "a valid value"
	}
	if t == reflect.TypeOf(time.Duration(0)) {
		return "a duration such as 500ms, 5s or 1m"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "a comma-separated list"
	case reflect.Map:
		return "a mapping"
	default:
		return "a " + t.String()
	}
}

// FieldError is a bad value for one field: a Validate failure, or a value
// that does not decode. Load's error names the environment variable (or
// file key) the value came from and wraps the FieldError, so
// errors.As(err, &fe) finds it.
type FieldError struct {
	Key   string // koanf key inside the section, e.g. "format" or "tls.cert_file"
	Value any
	Want  string // what is allowed
	Err   error  // the cause (a decoding error, say); may be nil
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s=%s: want %s", e.Key, quote(e.Value), e.Want)
}

// Unwrap returns the cause.
func (e *FieldError) Unwrap() error { return e.Err }

// Invalid returns a FieldError for Validate methods.
func Invalid(key string, value any, want string) error {
	return &FieldError{Key: key, Value: value, Want: want}
}

// OneOf checks value against the allowed values; nil when allowed.
func OneOf(key, value string, allowed ...string) error {
	if slices.Contains(allowed, value) {
		return nil
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = strconv.Quote(a)
	}
	return Invalid(key, value, "one of "+strings.Join(quoted, ", "))
}

func (s *Source) explainInvalid(section string, err error, origin map[string]string) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		if section == "" {
			return fmt.Errorf("fxcore: invalid configuration: %w", err)
		}
		return fmt.Errorf("fxcore: invalid %s configuration: %w", section, err)
	}
	where, ok := origin[fe.Key]
	if !ok {
		where = EnvName(section, fe.Key) + " (default)"
	}
	return located(where, fe)
}

// locatedError is a FieldError told with where its value came from.
type locatedError struct {
	msg string
	fe  *FieldError
}

func (e *locatedError) Error() string { return e.msg }
func (e *locatedError) Unwrap() error { return e.fe }

// located names where a bad value came from: an environment variable name,
// or "key\x00file" for a value from the config file.
func located(where string, fe *FieldError) error {
	if key, file, ok := strings.Cut(where, "\x00"); ok {
		return &locatedError{fmt.Sprintf("fxcore: invalid %s=%s in %s: want %s", key, quote(fe.Value), file, fe.Want), fe}
	}
	return &locatedError{fmt.Sprintf("fxcore: invalid %s=%s: want %s", where, quote(fe.Value), fe.Want), fe}
}
