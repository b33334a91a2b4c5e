//go:build !race

package fxevents_test

const raceEnabled = false
