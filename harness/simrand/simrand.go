// Package simrand is the randomness the ThingSpace and Rev.io simulators
// inject faults with. It is seeded, so a chaos run given the same seed
// replays the same faults for the same order of requests, and it depends
// on nothing of the project: the simulators must not share code with the
// clients they test.
package simrand

import (
	"math/rand/v2"
	"time"
)

// Rand is a seeded generator. Like rand.Rand it is not safe for concurrent
// use: each simulator draws from it under its own lock.
type Rand struct {
	*rand.Rand
}

// New returns a generator for seed; stream tells apart the simulators'
// sequences for the same seed.
func New(seed, stream uint64) Rand {
	return Rand{rand.New(rand.NewPCG(seed, stream))}
}

// Chance reports true with probability p: never for p <= 0 and always for
// p >= 1, without drawing, so a fault switched off or on does not move the
// sequence the other faults draw from.
func (r Rand) Chance(p float64) bool {
	if p <= 0 {
		return false
	}
	if p >= 1 {
		return true
	}
	return r.Float64() < p
}

// Jitter returns a random duration in [0, max], and 0 without drawing for
// max <= 0.
func (r Rand) Jitter(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(r.Int64N(int64(max) + 1))
}
