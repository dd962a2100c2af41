package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
)

// canTrigger: a shard's run, past its StartsPerRun-th device workflow,
// had the last of its starts confirmed at At (the event's time): its next
// workflow task hands its state to its next run. A worker killed now kills
// the shard in its hand-over.
type canTrigger struct {
	WorkflowID, RunID string
	At                time.Time
}

// shardWatch follows the shards' runs while the bulk change runs, each
// run's history as it grows (a long poll), and says when one hands over
// to its next run. A kill armed for that moment (KillWorkersAtShardCAN)
// then fires at once, rather than at a point of progress, which a
// hand-over, often under a second, would rarely meet.
type shardWatch struct {
	c            client.Client
	startsPerRun int
	// wake is signalled at each trigger, so that the drive loop does not
	// sleep through the continue-as-new.
	wake   chan struct{}
	mu     sync.Mutex
	last   *canTrigger // the latest trigger, until taken
	seen   int         // triggers seen
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watchShards starts following the shards.
func (h *harness) watchShards(ctx context.Context) (*shardWatch, error) {
	c, err := h.temporalClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal to watch the shards: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &shardWatch{c: c, startsPerRun: h.shards.StartsPerRun, wake: make(chan struct{}, 1), cancel: cancel}
	w.wg.Add(1)
	go w.list(ctx)
	return w, nil
}

// stop ends the watch; it returns the number of hand-overs it saw.
func (w *shardWatch) stop() int {
	w.cancel()
	w.wg.Wait()
	w.c.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// list finds the shards' new runs (every few hundred milliseconds: a run
// starts its first device workflows only after its first batch is sent,
// seconds later) and follows each. Errors (a Temporal restart) are
// retried at the next round.
func (w *shardWatch) list(ctx context.Context) {
	defer w.wg.Done()
	followed := map[string]bool{}
	for ctx.Err() == nil {
		var token []byte
		for {
			resp, err := w.c.ListWorkflow(ctx, listRequest(shardQuery+" AND ExecutionStatus = 'Running'", token))
			if err != nil {
				break
			}
			for _, e := range resp.Executions {
				if id, run := e.Execution.WorkflowId, e.Execution.RunId; !followed[run] {
					followed[run] = true
					w.wg.Add(1)
					go w.follow(ctx, id, run)
				}
			}
			if token = resp.NextPageToken; len(token) == 0 {
				break
			}
		}
		sleepCtx(ctx, 300*time.Millisecond)
	}
}

// follow reads a run's history as it is written, until the run closes.
// A read that fails (a Temporal restart) starts again after the last
// event seen.
func (w *shardWatch) follow(ctx context.Context, workflowID, runID string) {
	defer w.wg.Done()
	var lastEvent int64
	r := newShardRun(workflowID, runID, w.startsPerRun)
	for ctx.Err() == nil {
		it := w.c.GetWorkflowHistory(ctx, workflowID, runID, true, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			if err != nil {
				break
			}
			if ev.EventId <= lastEvent {
				continue
			}
			lastEvent = ev.EventId
			handingOver := !r.HandOver.IsZero()
			_ = r.take(ev) // a payload it cannot read changes nothing here
			if !handingOver && !r.HandOver.IsZero() {
				w.trigger(canTrigger{WorkflowID: workflowID, RunID: runID, At: r.HandOver})
			}
			if r.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				return
			}
		}
		sleepCtx(ctx, time.Second)
	}
}

func (w *shardWatch) trigger(t canTrigger) {
	w.mu.Lock()
	w.last = &t
	w.seen++
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns the latest trigger not yet taken, if it is at most maxAge
// old: an older one is a continue-as-new the drive loop missed while it
// injected another fault, most likely over by now.
func (w *shardWatch) take(maxAge time.Duration) (canTrigger, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.last
	w.last = nil
	if t == nil || time.Since(t.At) > maxAge {
		return canTrigger{}, false
	}
	return *t, true
}

// Kills armed for a shard's continue-as-new.
const (
	// canFresh: a trigger older than this is not acted on.
	canFresh = 1500 * time.Millisecond
	// canWait: a kill armed this long without a shard continuing as new
	// fires anyway (the shards may be past their last continue-as-new),
	// counted apart in the report.
	canWait = 2 * time.Minute
)

// armedKill is a kill waiting for a shard's continue-as-new.
type armedKill struct {
	Event
	since time.Time
}

// armedCounts are the armed kills' fates.
type armedCounts struct{ AtCAN, GaveUp, Unfired int }

// fireArmed fires the first armed kills, in schedule order, at a fresh
// trigger, or after canWait without one; it returns those still armed.
func (h *harness) fireArmed(ctx context.Context, w *shardWatch, armed []armedKill) ([]armedKill, error) {
	for len(armed) > 0 {
		a := armed[0]
		t, ok := w.take(canFresh)
		switch {
		case ok:
			h.log("%s (run %s), past its %d-th device workflow start, had its last start confirmed %s ago: handing over to its next run",
				t.WorkflowID, t.RunID, w.startsPerRun, time.Since(t.At).Round(time.Millisecond))
			h.armed.AtCAN++
		case time.Since(a.since) > canWait:
			h.log("no shard handed over to its next run within %s of arming %s; firing it anyway", canWait, a.Kind)
			h.armed.GaveUp++
		default:
			return armed, nil
		}
		armed = armed[1:]
		if err := h.inject(ctx, a.Event); err != nil {
			return armed, fmt.Errorf("inject %s: %w", a.Kind, err)
		}
	}
	return armed, nil
}
