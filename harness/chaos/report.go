package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report prints one table of a run (and of its baseline without faults,
// when there is one): devices, faults injected by kind and as observed,
// wall time, and each invariant with its violations, which name the device
// changes.
func Report(out io.Writer, r *Result, baseline *Result) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	mode := "with faults"
	if r.Options.NoFaults {
		mode = "without faults"
	}
	fmt.Fprintf(tw, "CHAOS RUN\tseed %d, %s\n", r.Options.Seed, mode)
	row("temporal", r.Temporal)
	row("devices", fmt.Sprintf("%d: %s", r.Options.Devices, categories(r.Counts)))
	row("bulk change", r.BulkID)
	wall := r.Wall.Round(time.Second).String()
	if !r.Finished {
		wall += fmt.Sprintf(" (NOT FINISHED: gave up after %s)", r.Options.Timeout)
	}
	row("wall time", wall+" (submission to the bulk change's end)")
	if r.Stall.Length > 0 {
		row("  longest stall", r.Stall.describe(r.Submitted)+" (no device change sent or final)")
		row("  of sending", r.SendStall.describe(r.Submitted)+" (no batch sent)")
	}
	if baseline != nil {
		ratio := float64(r.Wall) / float64(baseline.Wall)
		verdict := "within the 2x target"
		if ratio > 2 {
			verdict = "OVER the 2x target"
		}
		row("  without faults", fmt.Sprintf("%s, same seed and devices: ratio %.2f, %s", baseline.Wall.Round(time.Second), ratio, verdict))
	}
	if !r.Options.NoFaults {
		total := 0
		for _, k := range Kinds {
			total += r.Injected[k]
		}
		row("faults injected", fmt.Sprintf("%d (schedule: %d)", total, len(r.Schedule.Events)))
		for _, k := range Kinds {
			if n := r.Injected[k]; n > 0 || r.Schedule.Count()[k] > 0 {
				row("  "+string(k), fmt.Sprint(n))
			}
		}
	}
	o := r.Observed
	row("seen by ThingSpace", fmt.Sprintf("%d requests: %d answered 5xx (%d of them 502/504 after applying), %d answered 429, %d answers lost after applying; %d OAuth tokens, %d logins",
		o.TSRequests, o.TS5xx, o.TSGatewayAfterApply, o.TS429, o.TSLostAnswers, o.TSTokens, o.TSLogins))
	row("  callbacks", fmt.Sprintf("%d dropped, %d duplicated, %d late, %d delivery attempts failed (receiver down or 503)",
		o.CallbacksDropped, o.CallbacksDuplicated, o.CallbacksLate, o.CallbackAttemptsFailed))
	row("seen by Rev.io", fmt.Sprintf("%d calls: %d answered 5xx, %d answered 429, %d creates answered after the client gave up",
		o.RevioCalls, o.Revio5xx, o.Revio429, o.RevioStalledCreates))
	row("seen in PostgreSQL", fmt.Sprintf("%d requests reconciled after a lost answer, %d devices confirmed by polling, %d Rev.io services found by search",
		o.Reconciled, o.ConfirmedByPoll, o.RevioFound))
	if len(o.UnexpectedExits) > 0 {
		var parts []string
		for name, n := range o.UnexpectedExits {
			parts = append(parts, fmt.Sprintf("%s %d", name, n))
		}
		sort.Strings(parts)
		row("unexpected exits", strings.Join(parts, ", ")+" (restarted)")
	}
	row("histories scanned", fmt.Sprint(r.Workflows))
	shardRows(row, r)
	by := map[string][]Violation{}
	for _, v := range r.Violations {
		by[v.Check] = append(by[v.Check], v)
	}
	row("INVARIANTS", "")
	for _, c := range Checks {
		if n := len(by[c]); n > 0 {
			row("  "+c, fmt.Sprintf("VIOLATED (%d)", n))
		} else {
			row("  "+c, "ok")
		}
	}
	row("violations", fmt.Sprint(len(r.Violations)))
	if r.Dir != "" {
		row("run directory", r.Dir+" (logs; evidence/ when violated)")
	}
	_ = tw.Flush()
	const show = 40
	for i, v := range r.Violations {
		if i == show {
			fmt.Fprintf(out, "  ... %d more in %s/evidence/violations.txt\n", len(r.Violations)-show, r.Dir)
			break
		}
		fmt.Fprintf(out, "  VIOLATION %s\n", v)
	}
}

func categories(m map[Category]int) string {
	var parts []string
	for _, sh := range shares {
		if n := m[sh.cat]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", sh.cat, n))
		}
	}
	return strings.Join(parts, ", ")
}

// shardRows are the tree's rows: its shards and their runs, and where the
// worker kills fell among the shards' continue-as-new windows, measured
// from the shards' histories (shards.go).
func shardRows(row func(k, v string), r *Result) {
	s := r.Shards
	set := s.Settings
	row("shards", fmt.Sprintf("%d (bulk.shard_size %d, %d at once, continue-as-new every %d starts): %d runs, %d continued as new, %d restarted by the root, %d completed; the root ran %d times",
		s.Shards, set.Size, set.AtOnce, set.StartsPerRun, s.Runs, s.ContinuedAsNew, s.Restarts, s.Completed, s.RootRuns))
	if s.ContinuedAsNew > 0 {
		row("  continue-as-new", fmt.Sprintf("median %s from the %d-th start to the next run's first workflow task (waiting for starts to be confirmed), %s of it the hand-over (from the last confirmation)",
			s.Wait.Round(100*time.Millisecond), set.StartsPerRun, s.HandOver.Round(time.Millisecond)))
	}
	if r.Options.NoFaults {
		return
	}
	k := s.Kills
	row("  worker kills", fmt.Sprintf("%d: %d during a shard's hand-over, %d within %s of one; %d while a shard was continuing as new (hand-over or waiting for its starts)",
		k.Kills, k.HandOver, k.NearHandOver, nearCAN, k.Waiting))
	armed := r.Schedule.Count()[KillWorkersAtShardCAN] + r.Schedule.Count()[KillOneWorkerAtShardCAN]
	if armed > 0 {
		row("  armed for one", fmt.Sprintf("%d: %d fired as a hand-over began (%d measured inside one), %d after waiting %s for one, %d never fired",
			armed, s.Armed.AtCAN, k.ArmedHandOver, s.Armed.GaveUp, canWait, s.Armed.Unfired))
	}
}
