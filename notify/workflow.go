package notify

// How the workflows send an event: the activity's contract and options,
// and a small workflow of its own that a bulk change starts as an
// abandoned child, so that a notification retried for hours neither holds
// the bulk change open nor is lost when it ends or continues as new.

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ActivityName is the activity that sends an event
// (activities.Notifier.Notify, registered by activities.RegisterNotifier).
const ActivityName = "Notify"

// WorkflowName is the workflow that runs the activity (Workflow).
const WorkflowName = "SendNotification"

// Input is the activity's input: the event alone. No secret, no personal
// data: it is in the workflow's history.
type Input struct {
	Event Event `json:"event"`
}

// Result says what became of each channel of the event's kind.
type Result struct {
	// Delivered are the channels that took the event in this attempt.
	Delivered []string `json:"delivered,omitempty"`
	// AlreadyDelivered are the channels that had taken it in an earlier
	// attempt (or an earlier run of the same event), not sent again.
	AlreadyDelivered []string `json:"alreadyDelivered,omitempty"`
}

// Retry policy of the activity: a receiver that is down is tried again
// for a day, less and less often (10 s, 20 s, 40 s, ... then every 10
// minutes); each attempt is bounded by StartToClose, each delivery by
// notifications.timeout (10 s by default).
const (
	RetryInitialInterval = 10 * time.Second
	RetryBackoff         = 2.0
	RetryMaxInterval     = 10 * time.Minute
	RetryFor             = 24 * time.Hour
	StartToClose         = time.Minute
)

// ActivityOptions are the options to run ActivityName with.
func ActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    StartToClose,
		ScheduleToCloseTimeout: RetryFor,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    RetryInitialInterval,
			BackoffCoefficient: RetryBackoff,
			MaximumInterval:    RetryMaxInterval,
			// Bounded by ScheduleToCloseTimeout.
			MaximumAttempts: 0,
		},
	}
}

// Workflow sends one event: the activity with ActivityOptions. Register it
// under WorkflowName (RegisterWorkflow).
func Workflow(ctx workflow.Context, in Input) (Result, error) {
	ctx = workflow.WithActivityOptions(ctx, ActivityOptions())
	var res Result
	err := workflow.ExecuteActivity(ctx, ActivityName, in).Get(ctx, &res)
	return res, err
}

// WorkflowRegistry is what Workflow is registered on: a worker, a test
// environment, a replayer.
type WorkflowRegistry interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
}

// RegisterWorkflow registers Workflow under WorkflowName.
func RegisterWorkflow(r WorkflowRegistry) {
	r.RegisterWorkflowWithOptions(Workflow, workflow.RegisterOptions{Name: WorkflowName})
}

// WorkflowID is the id of the workflow sending an event: one per event.
func WorkflowID(e Event) string { return "notify/" + e.ID }

// ChildOptions are the options a bulk change starts Workflow with as a
// child: abandoned when the parent closes or continues as new, so the
// parent waits for nothing but the child's start.
//
//	ctx := workflow.WithChildOptions(ctx, notify.ChildOptions(ev))
//	f := workflow.ExecuteChildWorkflow(ctx, notify.WorkflowName, notify.Input{Event: ev})
//	err := f.GetChildWorkflowExecution().Get(ctx, nil) // started; its result is not awaited
//
// A start refused because the same event's workflow already runs
// (temporal.ChildWorkflowExecutionAlreadyStartedError) is that event on its
// way: not an error of the parent.
func ChildOptions(e Event) workflow.ChildWorkflowOptions {
	return workflow.ChildWorkflowOptions{
		WorkflowID:        WorkflowID(e),
		ParentClosePolicy: enumspb.PARENT_CLOSE_POLICY_ABANDON,
		// One workflow per event, ever: a recovered or resumed parent
		// telling the same event again is refused, not sent twice.
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		// The activity's own timeouts bound the run; this is a backstop.
		WorkflowExecutionTimeout: RetryFor + time.Hour,
	}
}
