package dbtest

import (
	"errors"
	"sync"
	"testing"
)

// Race runs fn n times at once, released together, and returns each run's
// result in order: the overlap that the store's unique indexes and row locks
// must settle.
func Race[T any](n int, fn func(i int) T) []T {
	out := make([]T, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return out
}

// RequireOneWinner races n calls of fn (see Race) and requires what an
// idempotent write promises to callers that overlap: none fails, all of them
// get the same value, and exactly one reports that it wrote it (fn's bool).
// It returns that value.
func RequireOneWinner[V comparable](t testing.TB, n int, fn func(i int) (V, bool, error)) V {
	t.Helper()
	type result struct {
		v     V
		first bool
		err   error
	}
	results := Race(n, func(i int) result {
		v, first, err := fn(i)
		return result{v, first, err}
	})
	winners := 0
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("call %d of %d: %v", i+1, n, r.err)
		}
		if r.v != results[0].v {
			t.Fatalf("call %d of %d got %v, call 1 got %v: overlapping calls must all get the one value", i+1, n,
				r.v, results[0].v)
		}
		if r.first {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d of %d overlapping calls report that they wrote the value, want exactly 1", winners, n)
	}
	return results[0].v
}

// RequireOneSucceeds races n calls of fn (see Race) and requires what a
// fence or a lock promises to callers that overlap: exactly one succeeds,
// and every other fails with lost.
func RequireOneSucceeds(t testing.TB, n int, lost error, fn func(i int) error) {
	t.Helper()
	succeeded := 0
	for i, err := range Race(n, fn) {
		if err == nil {
			succeeded++
			continue
		}
		if !errors.Is(err, lost) {
			t.Fatalf("call %d of %d: %v, want nil or %v", i+1, n, err, lost)
		}
	}
	if succeeded != 1 {
		t.Fatalf("%d of %d overlapping calls succeed, want exactly 1", succeeded, n)
	}
}
