//go:build race

package fxevents_test

// raceEnabled: the race detector drops sync.Pool items at random, so
// allocation counts are not deterministic under it.
const raceEnabled = true
