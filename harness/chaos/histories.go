package chaos

import (
	"context"
	"fmt"
	"sync"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/proto"
)

// quietLogger keeps the Temporal SDK's retries of a restarting server out
// of the run's output.
type quietLogger struct{}

func (quietLogger) Debug(string, ...any) {}
func (quietLogger) Info(string, ...any)  {}
func (quietLogger) Warn(string, ...any)  {}
func (quietLogger) Error(string, ...any) {}

func listRequest(query string, token []byte) *workflowservice.ListWorkflowExecutionsRequest {
	return &workflowservice.ListWorkflowExecutionsRequest{Namespace: "default", Query: query, PageSize: 1000, NextPageToken: token}
}

// execution is one run of a workflow.
type execution struct{ WorkflowID, RunID string }

// listExecutions lists every run of every workflow of the namespace, open
// and closed: each continue-as-new run of a bulk change has its own history.
func listExecutions(ctx context.Context, c client.Client) ([]execution, error) {
	var out []execution
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, listRequest("", token))
		if err != nil {
			return nil, fmt.Errorf("list workflows: %w", err)
		}
		for _, e := range resp.Executions {
			out = append(out, execution{e.Execution.WorkflowId, e.Execution.RunId})
		}
		token = resp.NextPageToken
		if len(token) == 0 {
			return out, nil
		}
	}
}

// scanHistories reads the history of every run and reports each needle
// found in it. It looks at the events' wire encoding, where payloads are
// the JSON the SDK wrote, unescaped: what `temporal workflow show -o json`
// decodes and shows.
func scanHistories(ctx context.Context, c client.Client, needles []Needle) (int, []Violation, error) {
	execs, err := listExecutions(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	var (
		mu      sync.Mutex
		out     []Violation
		firstEr error
		wg      sync.WaitGroup
	)
	work := make(chan execution)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range work {
				v, err := scanHistory(ctx, c, e, needles)
				mu.Lock()
				out = append(out, v...)
				if err != nil && firstEr == nil {
					firstEr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, e := range execs {
		work <- e
	}
	close(work)
	wg.Wait()
	return len(execs), out, firstEr
}

func scanHistory(ctx context.Context, c client.Client, e execution, needles []Needle) ([]Violation, error) {
	it := c.GetWorkflowHistory(ctx, e.WorkflowID, e.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var out []Violation
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			return out, fmt.Errorf("history of %s (run %s): %w", e.WorkflowID, e.RunID, err)
		}
		data, err := proto.Marshal(ev)
		if err != nil {
			return out, err
		}
		where := fmt.Sprintf("the history of %s (run %s), event %d %s", e.WorkflowID, e.RunID, ev.EventId, ev.EventType)
		out = append(out, Leaks(needles, where, data)...)
	}
	return out, nil
}
