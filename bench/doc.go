// Package bench holds side-by-side benchmarks of martyfx against the bare
// libraries and its peers. It has its own go.mod so benchmark-only
// dependencies (watermill, ...) stay out of the library's module.
package bench
