package simrand_test

import (
	"testing"
	"time"

	"github.com/iot-ops/tsbulk/harness/simrand"
)

// The same seed gives the same faults: chaos runs are replayed by seed.
func TestSameSeedSameDraws(t *testing.T) {
	a, b := simrand.New(42, 7), simrand.New(42, 7)
	for i := range 1000 {
		if a.Chance(0.3) != b.Chance(0.3) || a.Jitter(time.Second) != b.Jitter(time.Second) {
			t.Fatalf("draw %d differs for the same seed", i)
		}
	}
}

// A fault rate of 0 or 1 never draws, so switching one fault off or fully
// on leaves the others' sequence as it was.
func TestCertainOutcomesDoNotDraw(t *testing.T) {
	a, b := simrand.New(1, 2), simrand.New(1, 2)
	for range 100 {
		if a.Chance(0) || !a.Chance(1) || a.Chance(-1) || !a.Chance(2) || a.Jitter(0) != 0 || a.Jitter(-time.Second) != 0 {
			t.Fatal("a certain outcome came out otherwise")
		}
	}
	if a.Float64() != b.Float64() {
		t.Fatal("a certain outcome drew from the sequence")
	}
}

func TestRatesAndBounds(t *testing.T) {
	r := simrand.New(3, 4)
	const n = 20000
	hits := 0
	for range n {
		if r.Chance(0.25) {
			hits++
		}
		if j := r.Jitter(10 * time.Millisecond); j < 0 || j > 10*time.Millisecond {
			t.Fatalf("jitter %v outside [0, 10ms]", j)
		}
	}
	if rate := float64(hits) / n; rate < 0.23 || rate > 0.27 {
		t.Fatalf("Chance(0.25) came out %.3f over %d draws", rate, n)
	}
}
