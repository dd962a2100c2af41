package metrics

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// The SDK's timers (workflow task latency, schedule-to-start...) are
// seconds: with OpenTelemetry's default buckets (0, 5, 10, ... 10000) every
// workflow task of a healthy worker falls in the first one, and a quantile
// of them says nothing. A 20 ms workflow task must land in a bucket a
// dashboard can tell from a 2 s one.
func TestTemporalTimersHaveSubSecondBuckets(t *testing.T) {
	m := New()
	h, err := m.TemporalHandler(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	h.Timer("temporal_workflow_task_execution_latency").Record(20 * time.Millisecond)
	h.Timer("temporal_workflow_task_execution_latency").Record(2 * time.Second)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "temporal_workflow_task_execution_latency_seconds" {
			continue
		}
		below := map[float64]uint64{}
		for _, b := range f.GetMetric()[0].GetHistogram().GetBucket() {
			below[b.GetUpperBound()] = b.GetCumulativeCount()
		}
		if below[0.025] != 1 || below[1] != 1 || below[2.5] != 2 {
			t.Fatalf("buckets (upper bound: cumulative count) %v: want 20 ms below 0.025 s and 2 s below 2.5 s alone", below)
		}
		return
	}
	t.Fatal("no temporal_workflow_task_execution_latency_seconds in the registry")
}

// Alert rules take increase() of these counters: a series that first
// appears at 1 has none, so they exist at 0 from the start.
func TestAlertedCountersStartAtZero(t *testing.T) {
	got := series(t, New())
	want := []string{"tsbulk_callback_signals_total{result=signal_failed}"}
	for _, c := range BillingErrorCodes {
		want = append(want, "tsbulk_billing_steps_total{code="+c+",status=ERROR}")
	}
	for _, k := range want {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("%s = %v (reported: %v), want 0 from the start", k, v, ok)
		}
	}
}
