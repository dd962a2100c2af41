package chaos

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// The longest gap counts from the start, ignores times before it (a device
// change of an earlier run), and does not depend on the order of the rows.
func TestLongestGap(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	d, from := longestGap(t0, []time.Time{at(9), at(1), at(-100), at(2), at(40), at(41)})
	assert.Equal(t, 31*time.Second, d)
	assert.Equal(t, at(9), from)

	d, from = longestGap(t0, []time.Time{at(12), at(13)})
	assert.Equal(t, 12*time.Second, d, "the wait for the first progress is a gap too")
	assert.Equal(t, t0, from)

	d, _ = longestGap(t0, nil)
	assert.Zero(t, d)
}

// A stall is blamed on the last fault fired before it ended, which is the
// one inside it when one fired there, and is described relative to the
// submission.
func TestStallNamesTheFaultInsideIt(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	fired := []Fired{
		{At: t0.Add(10 * time.Second), Event: Event{Kind: KillReceiver}},
		{At: t0.Add(65 * time.Second), Event: Event{Kind: KillWorkers}},
		{At: t0.Add(300 * time.Second), Event: Event{Kind: RestartTemporal}},
	}
	s := Stall{Length: 3 * time.Minute, From: t0.Add(60 * time.Second)}
	s.Fault = lastBefore(fired, s.From.Add(s.Length))
	if assert.NotNil(t, s.Fault) {
		assert.Equal(t, KillWorkers, s.Fault.Event.Kind)
	}
	assert.Equal(t, "3m0s, from +1m0s; the last fault before its end: kill-workers at +1m5s", s.describe(t0))

	assert.Nil(t, lastBefore(fired, t0.Add(5*time.Second)), "no fault yet")
	assert.Equal(t, "none", Stall{}.describe(t0))
}
