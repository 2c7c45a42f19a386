//go:build !race

package http

// raceEnabled is set when the tests run under the race detector, which makes bulk inserts
// several times slower; tests that need volume use less of it then.
const raceEnabled = false
