package chaos

import (
	"fmt"
	"sort"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
)

// counts are device changes by status.
type counts struct{ total, processed, errors int }

func (c counts) String() string {
	return fmt.Sprintf("%d device changes, %d PROCESSED, %d ERROR", c.total, c.processed, c.errors)
}

func countChanges(changes []DeviceChange, keep func(DeviceChange) bool) counts {
	var c counts
	for _, dc := range changes {
		if !keep(dc) {
			continue
		}
		c.total++
		switch dc.Status {
		case "PROCESSED":
			c.processed++
		case "ERROR":
			c.errors++
		}
	}
	return c
}

// checkTree checks the tree against PostgreSQL: a bulk change larger than
// the shard size ran as shards that cover its batches once each, every
// shard's latest run completed with its last report, whose counts are its
// batches' device changes; the root completed with the device changes'
// counts, and its progress (the sum of its shards' reports) agrees.
func checkTree(t *ShardTree, changes []DeviceChange) []Violation {
	var out []Violation
	bad := func(format string, args ...any) {
		out = append(out, Violation{Check: CheckShards, Detail: fmt.Sprintf(format, args...)})
	}
	all := countChanges(changes, func(DeviceChange) bool { return true })
	shards := t.Shards()
	switch {
	case t.Sharded && len(shards) < 2:
		bad("%d shard workflows for a bulk change of %d devices (bulk.shard_size %d)", len(shards), all.total, t.Settings.Size)
	case !t.Sharded && len(shards) > 0:
		bad("%d shard workflows for a bulk change of %d devices, within bulk.shard_size %d", len(shards), all.total, t.Settings.Size)
	}
	for _, o := range shards {
		out = append(out, checkShard(o, changes)...)
	}
	out = append(out, checkCoverage(shards, changes)...)

	if t.Root == nil {
		bad("the root workflow has no result: %s", t.RootErr)
		return out
	}
	r := t.Root
	if r.Total != all.total || r.Processed != all.processed || r.Errors != all.errors {
		bad("the root's result says total %d, processed %d, errors %d; PostgreSQL has %s", r.Total, r.Processed, r.Errors, all)
	}
	if len(shards) == 0 {
		return out
	}
	p := r.Progress
	if p.Processed != all.processed || p.Errors != all.errors {
		bad("the root's progress, the sum of its shards' reports, says processed %d, errors %d; PostgreSQL has %s",
			p.Processed, p.Errors, all)
	}
	if p.Shards != len(shards) || p.ShardsDone != len(shards) || p.ShardsRunning != 0 {
		bad("the root's progress says %d shards, %d done, %d running; Temporal has %d shard workflows",
			p.Shards, p.ShardsDone, p.ShardsRunning, len(shards))
	}
	return out
}

// checkShard: the shard's latest run completed with its last report, and
// that report's counts are its batches' device changes in PostgreSQL.
func checkShard(o ShardOutcome, changes []DeviceChange) []Violation {
	var out []Violation
	bad := func(format string, args ...any) {
		out = append(out, Violation{Check: CheckShards, Detail: fmt.Sprintf("shard %d (%s, batches %d-%d): ",
			o.No, o.WorkflowID, o.Shard.FirstBatch, o.Shard.LastBatch) + fmt.Sprintf(format, args...)})
	}
	sh := o.Shard
	db := countChanges(changes, func(dc DeviceChange) bool { return dc.BatchNo >= sh.FirstBatch && dc.BatchNo <= sh.LastBatch })
	if db.total != sh.Devices {
		bad("planned %d device changes, PostgreSQL has %d in its batches", sh.Devices, db.total)
	}
	last := o.Last
	if last.Status != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		bad("its latest run %s is %s, not completed", last.RunID, strings.ToLower(last.Status.String()))
		return out
	}
	if last.Result == nil {
		bad("its latest run %s completed without a result", last.RunID)
		return out
	}
	switch rep := last.Result.Report; {
	case !rep.Done:
		bad("completed without its last report (done false, seq %d)", rep.Seq)
	case rep.Progress.Processed != db.processed || rep.Progress.Errors != db.errors:
		bad("its result says processed %d, errors %d; PostgreSQL has %s", rep.Progress.Processed, rep.Progress.Errors, db)
	}
	return out
}

// checkCoverage: the shards' batches are the bulk change's, each in one
// shard.
func checkCoverage(shards []ShardOutcome, changes []DeviceChange) []Violation {
	if len(shards) == 0 {
		return nil
	}
	batches := map[int]bool{}
	for _, dc := range changes {
		batches[dc.BatchNo] = true
	}
	in := map[int][]int{} // batch → shards
	for _, o := range shards {
		for b := o.Shard.FirstBatch; b <= o.Shard.LastBatch; b++ {
			in[b] = append(in[b], o.No)
		}
	}
	var problems []string
	for b := range batches {
		if len(in[b]) != 1 {
			problems = append(problems, fmt.Sprintf("batch %d in shards %v", b, in[b]))
		}
	}
	for b, nos := range in {
		if !batches[b] {
			problems = append(problems, fmt.Sprintf("shards %v have batch %d, which has no device change", nos, b))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return []Violation{{Check: CheckShards, Detail: "the shards do not cover the batches once each: " + strings.Join(problems, "; ")}}
}
