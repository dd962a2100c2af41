package workflows

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// SubmitBulkChange submits a bulk change from Temporal (the CLI's
// `temporal workflow start --type SubmitBulkChange` or the Web UI's start
// form), as `starter submit` does: the same validation, the same records,
// and the bulk change's own workflow started. A file with errors fails this
// workflow with its row/field report (the first problems when it is long,
// the whole report beside the file) and writes nothing.
func SubmitBulkChange(ctx workflow.Context, in api.SubmitInput) (*api.SubmitResult, error) {
	if err := checkSubmitInput(in); err != nil {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), activities.ErrTypeInvalidData, nil)
	}
	info := workflow.GetInfo(ctx)
	req := activities.SubmitFileInput{
		Input:      in,
		WorkflowID: info.WorkflowExecution.ID,
		RunID:      info.WorkflowExecution.RunID,
	}
	var res api.SubmitResult
	if err := workflow.ExecuteActivity(withSubmitFile(ctx), a.SubmitFile, req).Get(ctx, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// withSubmitFile sets the options of SubmitFile. Checking and writing a
// file of 200,000 rows takes longer than a database call's 30 s, so the
// bound is minutes, with a heartbeat (the activity beats as it reads) for a
// worker that dies meanwhile; a refused file (outside the inbox, not a
// regular file, with problems) is refused for good, and an attempt that
// keeps failing otherwise ends after an hour instead of never. The options
// are not part of the commands a replay compares.
var withSubmitFile = withActivityOptions(workflow.ActivityOptions{
	StartToCloseTimeout:    15 * time.Minute,
	ScheduleToCloseTimeout: time.Hour,
	HeartbeatTimeout:       deathNoticedAfter,
	RetryPolicy: &temporal.RetryPolicy{
		InitialInterval:    time.Second,
		BackoffCoefficient: 2,
		MaximumInterval:    time.Minute,
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidData, activities.ErrTypeInvalidFile,
			activities.ErrTypeOutsideInbox},
	},
})

// checkSubmitInput refuses what cannot be submitted, before anything runs.
// PPU values given inline are already in this workflow's history; the
// refusal keeps them out of everything else and tells the operator how to
// submit them instead.
func checkSubmitInput(in api.SubmitInput) error {
	if (in.File == "") == (len(in.Devices) == 0) {
		return fmt.Errorf(
			"give either file (a file in an inbox directory) or devices (inline rows), not both or neither",
		)
	}
	var ppu []string
	for i, row := range in.Devices {
		var cols []string
		//workflowcheck:ignore the columns are sorted below
		for col := range row {
			if strings.HasPrefix(strings.ToLower(col), "ppu_") {
				cols = append(cols, col)
			}
		}
		sort.Strings(cols)
		for _, c := range cols {
			ppu = append(ppu, fmt.Sprintf("devices[%d].%s", i, c))
		}
	}
	if len(ppu) > 0 {
		return fmt.Errorf("inline devices may not carry PPU (personal data never belongs in a workflow's input): %s; "+
			"put the file in an inbox directory and name it with file", strings.Join(ppu, ", "))
	}
	return nil
}
