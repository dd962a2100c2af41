package thingspacesim

import (
	"container/heap"
	"time"
)

// One goroutine runs all timed work (device completions, late callbacks,
// callback retries) from a heap, rather than one timer per device: a
// 10,000-device request then costs 10,000 heap entries, not 10,000 timers,
// and Close has a single thing to stop.

type event struct {
	at  time.Time
	seq uint64 // ties keep scheduling order, so equal due times stay in request order
	fn  func(now time.Time)
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].seq < h[j].seq
	}
	return h[i].at.Before(h[j].at)
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// scheduleLocked runs fn (with s.mu held) at or after at. It does nothing
// once the simulator is closed.
func (s *Simulator) scheduleLocked(at time.Time, fn func(now time.Time)) {
	if s.closed {
		return
	}
	s.eventSeq++
	e := &event{at: at, seq: s.eventSeq, fn: fn}
	heap.Push(&s.events, e)
	if s.events[0] == e {
		select {
		case s.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// runScheduler runs due events in time order until Close. Events run with
// s.mu held and must not block.
func (s *Simulator) runScheduler() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.events) > 0 && !s.events[0].at.After(now) {
			e := heap.Pop(&s.events).(*event)
			e.fn(now)
		}
		wait := time.Hour
		if len(s.events) > 0 {
			wait = s.events[0].at.Sub(now)
		}
		s.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-s.ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}
