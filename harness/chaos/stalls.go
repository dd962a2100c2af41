package chaos

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stall is the longest time a bulk change went without progress. The wall
// time says a run was slow; the stall says where: a fault that makes the
// product wait out a timeout (a killed worker's activity retried only
// after its start-to-close) shows as a stall just after that fault, where
// the baseline's longest stall is a callback wait of a few seconds.
type Stall struct {
	Length time.Duration
	From   time.Time // the last progress before the gap
	// Fault is the last fault injected before the gap ended (nil if
	// none): the one that fired inside it, when one did.
	Fault *Fired
}

// Fired is a fault as injected: when, and which.
type Fired struct {
	At    time.Time
	Event Event
}

// longestGap is the longest interval between consecutive times, counting
// from start (times before it are ignored); zero with nothing after start.
func longestGap(start time.Time, times []time.Time) (time.Duration, time.Time) {
	ts := make([]time.Time, 0, len(times))
	for _, t := range times {
		if !t.Before(start) {
			ts = append(ts, t)
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var longest time.Duration
	from, prev := start, start
	for _, t := range ts {
		if d := t.Sub(prev); d > longest {
			longest, from = d, prev
		}
		prev = t
	}
	return longest, from
}

// lastBefore is the last fault fired at or before t (nil when none).
func lastBefore(fired []Fired, t time.Time) *Fired {
	var last *Fired
	for i := range fired {
		if !fired[i].At.After(t) && (last == nil || fired[i].At.After(last.At)) {
			last = &fired[i]
		}
	}
	return last
}

// stalls reads the bulk change's progress from the device changes' own
// timestamps (submitted_at when ThingSpace took the batch, completed_at
// when the outcome was recorded), not from the harness's polling, and
// returns the longest gap in either (progress) and in sending alone
// (sending: no batch sent while some device changes still waited).
func (h *harness) stalls(ctx context.Context, start time.Time) (progress, sending Stall, err error) {
	rows, err := h.pool.Query(ctx, `SELECT submitted_at, completed_at FROM device_changes WHERE bulk_change_id = $1`, h.bulkID)
	if err != nil {
		return progress, sending, err
	}
	type stamps struct{ sentAt, completed *time.Time }
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (stamps, error) {
		var s stamps
		return s, r.Scan(&s.sentAt, &s.completed)
	})
	if err != nil {
		return progress, sending, fmt.Errorf("read the device changes' timestamps: %w", err)
	}
	var sent, any []time.Time
	for _, s := range all {
		if s.sentAt != nil {
			sent = append(sent, *s.sentAt)
			any = append(any, *s.sentAt)
		}
		if s.completed != nil {
			any = append(any, *s.completed)
		}
	}
	h.mu.Lock()
	fired := append([]Fired(nil), h.fired...)
	h.mu.Unlock()
	progress.Length, progress.From = longestGap(start, any)
	progress.Fault = lastBefore(fired, progress.From.Add(progress.Length))
	sending.Length, sending.From = longestGap(start, sent)
	sending.Fault = lastBefore(fired, sending.From.Add(sending.Length))
	return progress, sending, nil
}

// describe is a stall for the report, times relative to the submission.
func (s Stall) describe(start time.Time) string {
	if s.Length == 0 {
		return "none"
	}
	out := fmt.Sprintf("%s, from +%s", s.Length.Round(100*time.Millisecond), s.From.Sub(start).Round(time.Second))
	if s.Fault != nil {
		out += fmt.Sprintf("; the last fault before its end: %s at +%s", s.Fault.Event.Kind, s.Fault.At.Sub(start).Round(time.Second))
	}
	return out
}
