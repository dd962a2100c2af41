package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/iot-ops/tsbulk/workflows/api"
)

// ShardSettings are the product's shard settings of a run: small enough
// that the bulk change runs as several shards, three at a time, each
// continuing as new several times, so that faults land on the tree and on
// shards between runs.
type ShardSettings struct {
	Size, AtOnce, StartsPerRun int
}

// shardSettingsFor picks the shard settings of a run of devices devices:
// the full run (2,000) has 5 shards of 400, each continuing as new every
// 100 starts (4 times); the short run (500) has about 4 shards of 150, each
// continuing as new every 50 starts (after each batch of 50). Batches
// (bulk.batch_size 50) fit in either shard size.
func shardSettingsFor(devices int) ShardSettings {
	if devices > 1000 {
		return ShardSettings{Size: 400, AtOnce: 3, StartsPerRun: 100}
	}
	return ShardSettings{Size: 150, AtOnce: 3, StartsPerRun: 50}
}

// shardQuery lists the shard workflows: a run has one bulk change, so its
// shards are every BulkChangeShard of the namespace (a plain equality every
// visibility store answers, unlike STARTS_WITH).
var shardQuery = fmt.Sprintf("WorkflowType = '%s'", api.BulkChangeShardWorkflowType)

// shardRun is one run of a shard workflow, as its history records it.
type shardRun struct {
	WorkflowID, RunID string
	Input             api.ShardInput
	Started           time.Time
	// FirstTask is when the run's first workflow task completed: the run
	// is under way.
	FirstTask time.Time
	// Decided is when the run started its StartsPerRun-th device workflow
	// (zero if it started fewer): it starts no more, waits for those
	// starts to be confirmed, then continues as new.
	Decided time.Time
	// HandOver is when, after Decided, the last of its starts was
	// confirmed: its next workflow task hands its state to its next run.
	HandOver time.Time
	// LastTask is the start of its last workflow task.
	LastTask time.Time
	Closed   time.Time
	Status   enumspb.WorkflowExecutionStatus
	// Next is the run it continued as new into.
	Next   string
	Result *api.ShardResult

	startsPerRun, initiated, confirmed int
}

func newShardRun(workflowID, runID string, startsPerRun int) shardRun {
	return shardRun{WorkflowID: workflowID, RunID: runID, Status: enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, startsPerRun: startsPerRun}
}

// readShardRun reads one run's history.
func readShardRun(ctx context.Context, c client.Client, workflowID, runID string, startsPerRun int) (shardRun, error) {
	r := newShardRun(workflowID, runID, startsPerRun)
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return r, fmt.Errorf("history of %s (run %s): %w", workflowID, runID, err)
		}
		if err := r.take(ev); err != nil {
			return r, fmt.Errorf("history of %s (run %s), event %d: %w", workflowID, runID, ev.EventId, err)
		}
	}
	return r, nil
}

// take records what an event says about the run.
func (r *shardRun) take(ev *historypb.HistoryEvent) error {
	at := ev.GetEventTime().AsTime()
	dc := converter.GetDefaultDataConverter()
	switch ev.GetEventType() {
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
		r.Started = at
		return dc.FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &r.Input)
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
		if r.FirstTask.IsZero() {
			r.FirstTask = at
		}
	case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
		r.LastTask = at
	case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
		if r.initiated++; r.initiated == r.startsPerRun {
			r.Decided = at
		}
	case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED, enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
		if r.confirmed++; r.confirmed == r.initiated && !r.Decided.IsZero() && r.HandOver.IsZero() {
			r.HandOver = at
		}
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
		r.Closed, r.Status = at, enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW
		r.Next = ev.GetWorkflowExecutionContinuedAsNewEventAttributes().GetNewExecutionRunId()
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
		r.Closed, r.Status = at, enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED
		var res api.ShardResult
		if err := dc.FromPayloads(ev.GetWorkflowExecutionCompletedEventAttributes().GetResult(), &res); err != nil {
			return err
		}
		r.Result = &res
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
		r.Closed, r.Status = at, enumspb.WORKFLOW_EXECUTION_STATUS_FAILED
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED:
		r.Closed, r.Status = at, enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT:
		r.Closed, r.Status = at, enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT
	case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED:
		r.Closed, r.Status = at, enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED
	}
	return nil
}

// ShardTree is the bulk change's tree as Temporal holds it after the run:
// every run of every shard, and the root's result.
type ShardTree struct {
	Settings ShardSettings
	// Sharded: the bulk change is larger than the shard size, so it must
	// have run as shards.
	Sharded bool
	Runs    []shardRun
	// Root is the root workflow's result (nil when it has none: RootErr
	// says why).
	Root    *api.BulkChangeResult
	RootErr string
}

// ShardOutcome is one shard as its runs tell it.
type ShardOutcome struct {
	No         int
	WorkflowID string
	Shard      api.Shard
	Runs       int
	// Restarts: runs started afresh (not by a continue-as-new) after the
	// first, i.e. the root started the shard again to recover its part.
	Restarts int
	// Last is the shard's latest run: its status and result are the shard's.
	Last shardRun
}

// Shards groups the runs by shard, in shard order.
func (t ShardTree) Shards() []ShardOutcome {
	by := map[string]*ShardOutcome{}
	for _, r := range t.Runs {
		o := by[r.WorkflowID]
		if o == nil {
			o = &ShardOutcome{No: r.Input.Shard.No, WorkflowID: r.WorkflowID, Shard: r.Input.Shard, Last: r}
			by[r.WorkflowID] = o
		}
		o.Runs++
		if r.Input.Resume == nil && r.Input.Recover {
			o.Restarts++
		}
		if r.Started.After(o.Last.Started) {
			o.Last = r
		}
	}
	out := make([]ShardOutcome, 0, len(by))
	for _, o := range by {
		out = append(out, *o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].No < out[j].No })
	return out
}

// canWindow is a shard's continue-as-new, which ends with the first
// completed workflow task of the run it continued into. It begins when its
// run started its StartsPerRun-th device workflow (Decided), then waits
// for those starts to be confirmed, which takes seconds to a minute on a
// busy dev server; the hand-over proper begins with the last confirmation
// (HandOver). For a run that continued as new for another reason both are
// its last workflow task's start.
type canWindow struct {
	WorkflowID             string
	Decided, HandOver, End time.Time
}

// canWindows lists the shards' continue-as-new windows.
func (t ShardTree) canWindows() []canWindow {
	byRun := map[string]shardRun{}
	for _, r := range t.Runs {
		byRun[r.RunID] = r
	}
	var out []canWindow
	for _, r := range t.Runs {
		if r.Status != enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW {
			continue
		}
		w := canWindow{WorkflowID: r.WorkflowID, Decided: r.Decided, HandOver: r.HandOver, End: r.Closed}
		if w.Decided.IsZero() || w.Decided.After(r.Closed) {
			w.Decided = r.LastTask
		}
		if w.HandOver.IsZero() || w.HandOver.After(r.Closed) {
			w.HandOver = r.LastTask
		}
		if next, ok := byRun[r.Next]; ok && !next.FirstTask.IsZero() {
			w.End = next.FirstTask
		}
		out = append(out, w)
	}
	return out
}

// nearCAN is how close to a shard's hand-over a kill counts as near it:
// the killed worker's restart (its down time and start, a few seconds)
// still meets the new run's first workflow task.
const nearCAN = 5 * time.Second

// workerKills are the kinds that kill a worker.
var workerKills = map[Kind]bool{KillWorkers: true, KillOneWorker: true, KillWorkersAtShardCAN: true, KillOneWorkerAtShardCAN: true}

// landings are the worker kills and where they fell among the shards'
// continue-as-new windows.
type landings struct {
	Kills int
	// HandOver: fired inside a hand-over; NearHandOver: within nearCAN of
	// one (HandOver included); Waiting: inside a whole window, from
	// Decided on (HandOver included).
	HandOver, NearHandOver, Waiting int
	// ArmedHandOver: kills armed for a hand-over (atShardCAN) fired inside
	// one.
	ArmedHandOver int
}

// canLandings places the worker kills fired among the windows.
func canLandings(fired []Fired, wins []canWindow, near time.Duration) landings {
	var l landings
	within := func(t, from, to time.Time) bool { return !t.Before(from) && !t.After(to) }
	for _, f := range fired {
		if !workerKills[f.Event.Kind] {
			continue
		}
		l.Kills++
		var in, close, waiting bool
		for _, w := range wins {
			in = in || within(f.At, w.HandOver, w.End)
			close = close || within(f.At, w.HandOver.Add(-near), w.End.Add(near))
			waiting = waiting || within(f.At, w.Decided, w.End)
		}
		l.HandOver += b2i(in)
		l.ArmedHandOver += b2i(in && f.Event.Kind.atShardCAN())
		l.NearHandOver += b2i(close)
		l.Waiting += b2i(waiting)
	}
	return l
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// median of durations (zero for none).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// ShardStats is the tree of a run for the report, measured from the
// shards' histories and the faults' times.
type ShardStats struct {
	Settings                ShardSettings
	Shards, Runs, Completed int
	// ContinuedAsNew: shard runs that continued as new; Restarts: shards
	// the root started again to recover their part.
	ContinuedAsNew, Restarts int
	// Kills: where the worker kills fell among the continue-as-new windows.
	Kills landings
	// Armed: the fates of the kills armed for a continue-as-new.
	Armed armedCounts
	// Wait and HandOver are the windows' median lengths, from Decided and
	// from HandOver to the next run's first workflow task.
	Wait, HandOver time.Duration
	RootRuns       int
	RootErr        string
}

// stats sums the tree up against the faults fired.
func (t ShardTree) stats(fired []Fired) ShardStats {
	s := ShardStats{Settings: t.Settings, Runs: len(t.Runs), RootErr: t.RootErr}
	for _, o := range t.Shards() {
		s.Shards++
		s.Restarts += o.Restarts
		if o.Last.Status == enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
			s.Completed++
		}
	}
	wins := t.canWindows()
	s.ContinuedAsNew = len(wins)
	var waits, handOvers []time.Duration
	for _, w := range wins {
		waits = append(waits, w.End.Sub(w.Decided))
		handOvers = append(handOvers, w.End.Sub(w.HandOver))
	}
	s.Wait, s.HandOver = median(waits), median(handOvers)
	s.Kills = canLandings(fired, wins, nearCAN)
	if r := t.Root; r != nil {
		s.RootRuns = r.Progress.Runs
	}
	return s
}

// readShardTree reads every run of every shard, and the root's result.
func readShardTree(ctx context.Context, c client.Client, rootID string, set ShardSettings, devices int) (ShardTree, error) {
	t := ShardTree{Settings: set, Sharded: devices > set.Size}
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, listRequest(shardQuery, token))
		if err != nil {
			return t, fmt.Errorf("list the shard workflows: %w", err)
		}
		for _, e := range resp.Executions {
			r, err := readShardRun(ctx, c, e.Execution.WorkflowId, e.Execution.RunId, set.StartsPerRun)
			if err != nil {
				return t, err
			}
			t.Runs = append(t.Runs, r)
		}
		if token = resp.NextPageToken; len(token) == 0 {
			break
		}
	}
	t.Root, t.RootErr = rootResult(ctx, c, rootID)
	return t, nil
}

// rootResult is the root workflow's result, following its continue-as-new
// runs; a root not completed has none, and the reason says so.
func rootResult(ctx context.Context, c client.Client, rootID string) (*api.BulkChangeResult, string) {
	d, err := c.DescribeWorkflow(ctx, rootID, "")
	if err != nil {
		return nil, fmt.Sprintf("describe %s: %v", rootID, err)
	}
	if st := d.RawResponse.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		return nil, fmt.Sprintf("%s is %s, not completed", rootID, strings.ToLower(st.String()))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var res api.BulkChangeResult
	if err := c.GetWorkflow(ctx, rootID, "").Get(ctx, &res); err != nil {
		return nil, fmt.Sprintf("the result of %s: %v", rootID, err)
	}
	return &res, ""
}
