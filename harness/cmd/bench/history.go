package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
)

// historyTotals are the history events of every workflow run whose ID
// starts with a prefix (one bulk change, or one floor run).
type historyTotals struct {
	events, largest int64
	runs            int
}

// historyStats adds up the history events of the runs whose workflow ID
// starts with prefix, once visibility shows at least want of them closed.
// Only that prefix is counted: the server may be shared (the
// PostgreSQL-backed one serves other engineers' tests too).
func historyStats(ctx context.Context, c client.Client, prefix string, want int) (historyTotals, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		t, open, err := listTotals(ctx, c, prefix)
		if err != nil {
			return t, err
		}
		// Visibility is updated after a run closes: wait until it shows
		// every run, or give up and count what it shows.
		if (t.runs >= want && open == 0) || time.Now().After(deadline) {
			return t, nil
		}
		time.Sleep(2 * time.Second)
	}
}

// describeTotal adds up the history lengths of the runs whose workflow ID
// starts with prefix as each run's own record has them, not visibility: a
// check of listTotals.
func describeTotal(ctx context.Context, c client.Client, prefix string) (int64, int, error) {
	var token []byte
	var total int64
	seen := map[string]bool{}
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token,
			Query: fmt.Sprintf("WorkflowId STARTS_WITH %q", prefix)})
		if err != nil {
			return 0, 0, err
		}
		for _, w := range resp.GetExecutions() {
			ex := w.GetExecution()
			if seen[ex.GetRunId()] {
				continue
			}
			seen[ex.GetRunId()] = true
			d, err := c.DescribeWorkflow(ctx, ex.GetWorkflowId(), ex.GetRunId())
			if err != nil {
				return 0, 0, err
			}
			total += d.RawResponse.GetWorkflowExecutionInfo().GetHistoryLength()
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return total, len(seen), nil
		}
	}
}

func listTotals(ctx context.Context, c client.Client, prefix string) (t historyTotals, open int, err error) {
	query := fmt.Sprintf("WorkflowId STARTS_WITH %q", prefix)
	filter := false
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token, Query: query})
		if err != nil && !filter {
			// A visibility store without STARTS_WITH: list everything and
			// filter here.
			query, filter, token = "", true, nil
			t, open = historyTotals{}, 0
			continue
		}
		if err != nil {
			return t, open, err
		}
		for _, w := range resp.GetExecutions() {
			if filter && !strings.HasPrefix(w.GetExecution().GetWorkflowId(), prefix) {
				continue
			}
			t.runs++
			if w.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				open++
			}
			t.events += w.GetHistoryLength()
			t.largest = max(t.largest, w.GetHistoryLength())
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			return t, open, nil
		}
	}
}

// visibilityLength is the history length visibility reports for a
// workflow's latest run (a check of historyStats, which relies on it).
func visibilityLength(ctx context.Context, c client.Client, workflowID string) (int64, error) {
	resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1,
		Query: fmt.Sprintf("WorkflowId = %q", workflowID)})
	if err != nil || len(resp.GetExecutions()) == 0 {
		return 0, err
	}
	return resp.GetExecutions()[0].GetHistoryLength(), nil
}

// runIDs lists the runs of one workflow ID (a parent that continued as new
// has one per run), oldest first.
func runIDs(ctx context.Context, c client.Client, workflowID string) ([]string, error) {
	type run struct {
		id    string
		start time.Time
	}
	var runs []run
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{PageSize: 1000, NextPageToken: token,
			Query: fmt.Sprintf("WorkflowId = %q", workflowID)})
		if err != nil {
			return nil, err
		}
		for _, w := range resp.GetExecutions() {
			runs = append(runs, run{w.GetExecution().GetRunId(), w.GetStartTime().AsTime()})
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].start.Before(runs[j].start) })
	out := make([]string, len(runs))
	for i, r := range runs {
		out[i] = r.id
	}
	return out, nil
}

func history(ctx context.Context, c client.Client, workflowID, runID string) ([]*historypb.HistoryEvent, error) {
	it := c.GetWorkflowHistory(ctx, workflowID, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var events []*historypb.HistoryEvent
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, err
		}
		events = append(events, e)
	}
	return events, nil
}

// eventName is the event type in the Web UI's words (WorkflowTaskScheduled),
// markers with their name (MarkerRecorded:Version).
func eventName(e *historypb.HistoryEvent) string {
	name := e.GetEventType().String() // ChildWorkflowExecutionStarted
	if m := e.GetMarkerRecordedEventAttributes(); m != nil {
		name += ":" + m.GetMarkerName()
	}
	return name
}

// breakdown is the mean number of events of each type per unit (per
// device for a parent, per workflow for children).
type breakdown struct {
	what   string
	counts map[string]float64
	total  float64
}

func newBreakdown(what string, events [][]*historypb.HistoryEvent, per float64) breakdown {
	b := breakdown{what: what, counts: map[string]float64{}}
	for _, h := range events {
		for _, e := range h {
			b.counts[eventName(e)] += 1 / per
			b.total += 1 / per
		}
	}
	return b
}

func (b breakdown) String() string {
	type kv struct {
		k string
		v float64
	}
	var kvs []kv
	for k, v := range b.counts {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].v != kvs[j].v {
			return kvs[i].v > kvs[j].v
		}
		return kvs[i].k < kvs[j].k
	})
	parts := make([]string, 0, len(kvs))
	for _, p := range kvs {
		parts = append(parts, fmt.Sprintf("%s %.2f", p.k, p.v))
	}
	return fmt.Sprintf("%s: %.2f events (%s)", b.what, b.total, strings.Join(parts, ", "))
}

// parentTiming is what the parent's histories say about where its time
// goes: its workflow tasks, and how long each batch of child starts took to
// be confirmed (BulkChange waits for a page's starts before anything else).
type parentTiming struct {
	runs, tasks         int
	taskWait, taskRun   []time.Duration // schedule→start (queue and server), start→complete (worker)
	batches             []int           // children initiated per workflow task that initiated any
	confirm             []time.Duration // a batch's initiation → its last child's start
	childStart          []time.Duration // each child: initiation → started
	waitingShare        float64         // share of the parent's wall time with a batch's starts outstanding
	wall                time.Duration
	timers, localActs   int
	signalsIn, failures int
}

func analyseParent(runs [][]*historypb.HistoryEvent) parentTiming {
	var p parentTiming
	var waiting time.Duration
	for _, h := range runs {
		if len(h) == 0 {
			continue
		}
		p.runs++
		p.wall += h[len(h)-1].GetEventTime().AsTime().Sub(h[0].GetEventTime().AsTime())
		at := map[int64]time.Time{}
		batchOf := map[int64]int64{} // initiated event → the task completion that initiated it
		batchStart := map[int64]time.Time{}
		batchEnd := map[int64]time.Time{}
		batchSize := map[int64]int{}
		var order []int64
		for _, e := range h {
			id, t := e.GetEventId(), e.GetEventTime().AsTime()
			at[id] = t
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_STARTED:
				p.taskWait = append(p.taskWait, t.Sub(at[e.GetWorkflowTaskStartedEventAttributes().GetScheduledEventId()]))
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				p.tasks++
				p.taskRun = append(p.taskRun, t.Sub(at[e.GetWorkflowTaskCompletedEventAttributes().GetStartedEventId()]))
			case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
				b := e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowTaskCompletedEventId()
				batchOf[id] = b
				if batchSize[b] == 0 {
					order = append(order, b)
					batchStart[b] = t
				}
				batchSize[b]++
			case enumspb.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_STARTED:
				ini := e.GetChildWorkflowExecutionStartedEventAttributes().GetInitiatedEventId()
				p.childStart = append(p.childStart, t.Sub(at[ini]))
				if b, ok := batchOf[ini]; ok && t.After(batchEnd[b]) {
					batchEnd[b] = t
				}
			case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED:
				p.failures++
			case enumspb.EVENT_TYPE_TIMER_STARTED:
				p.timers++
			case enumspb.EVENT_TYPE_MARKER_RECORDED:
				p.localActs++
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
				p.signalsIn++
			}
		}
		// Batches whose waits overlap are counted once.
		var busyUntil time.Time
		for _, b := range order {
			p.batches = append(p.batches, batchSize[b])
			end := batchEnd[b]
			if end.IsZero() {
				continue
			}
			p.confirm = append(p.confirm, end.Sub(batchStart[b]))
			from := batchStart[b]
			if from.Before(busyUntil) {
				from = busyUntil
			}
			if end.After(from) {
				waiting += end.Sub(from)
				busyUntil = end
			}
		}
	}
	if p.wall > 0 {
		p.waitingShare = float64(waiting) / float64(p.wall)
	}
	return p
}

func (p parentTiming) String() string {
	meanInt := func(v []int) float64 {
		s := 0
		for _, x := range v {
			s += x
		}
		return float64(s) / float64(max(len(v), 1))
	}
	return fmt.Sprintf("%d runs, %d workflow tasks; task wait (scheduled→started) %s; task processing (started→completed) %s; "+
		"child starts initiated in %d tasks, %.0f per task; initiation→child started %s; initiation→last start of its task's batch %s; "+
		"share of the parent's time with starts outstanding %.0f%%; %d timers, %d markers, %d signals received, %d failed starts",
		p.runs, p.tasks, quantiles(p.taskWait), quantiles(p.taskRun), len(p.batches), meanInt(p.batches),
		quantiles(p.childStart), quantiles(p.confirm), 100*p.waitingShare, p.timers, p.localActs, p.signalsIn, p.failures)
}

// childTiming is what sampled children's histories say about their life.
type childTiming struct {
	n         int
	lifetime  []time.Duration // started → closed
	toSignal  []time.Duration // started → first signal received
	signalled int             // children that received a signal
	tasks     float64         // workflow tasks per child
}

func analyseChildren(hs [][]*historypb.HistoryEvent) childTiming {
	var c childTiming
	for _, h := range hs {
		if len(h) == 0 {
			continue
		}
		c.n++
		start := h[0].GetEventTime().AsTime()
		c.lifetime = append(c.lifetime, h[len(h)-1].GetEventTime().AsTime().Sub(start))
		got := false
		for _, e := range h {
			switch e.GetEventType() {
			case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
				if !got {
					c.toSignal = append(c.toSignal, e.GetEventTime().AsTime().Sub(start))
					c.signalled++
					got = true
				}
			case enumspb.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
				c.tasks++
			}
		}
	}
	c.tasks /= float64(max(c.n, 1))
	return c
}

func (c childTiming) String() string {
	return fmt.Sprintf("%d sampled: lifetime %s; %d received a signal, after %s; %.1f workflow tasks each",
		c.n, quantiles(c.lifetime), c.signalled, quantiles(c.toSignal), c.tasks)
}

// quantiles prints the median, the 95th percentile and the maximum.
func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(f float64) time.Duration { return s[min(len(s)-1, int(f*float64(len(s))))] }
	r := func(x time.Duration) string {
		switch {
		case x < 10*time.Millisecond:
			return x.Round(100 * time.Microsecond).String()
		case x < time.Second:
			return x.Round(time.Millisecond).String()
		default:
			return x.Round(10 * time.Millisecond).String()
		}
	}
	return fmt.Sprintf("p50 %s p95 %s max %s", r(q(0.5)), r(q(0.95)), r(s[len(s)-1]))
}
