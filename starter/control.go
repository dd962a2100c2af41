package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"

	"go.temporal.io/sdk/client"

	"github.com/iot-ops/tsbulk/workflows/api"
)

// operatorRequest sends an operator's request (pause, resume, cancel,
// approve, reject) to a running bulk change as a Temporal Update, and
// prints its answer. A request the bulk change refuses (pause a finished
// one, approve one's own) comes back with the reason and changes nothing.
func (c *cli) operatorRequest(ctx context.Context, t *target) error {
	req := api.OperatorRequest{By: t.as, Reason: t.reason}
	// The bulk change refuses it too; refused here, nothing is sent.
	if err := req.Validate(); err != nil {
		return &exitError{2, fmt.Errorf("%s: %v (--as, --reason)", t.name, err)}
	}
	h, err := t.tc.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   t.b.WorkflowID,
		UpdateName:   t.name,
		Args:         []any{req},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		var res api.OperatorResult
		if err = h.Get(ctx, &res); err == nil {
			fmt.Fprintf(c.out, "bulk change %s: %s\n", t.id, res.Message)
			return nil
		}
	}
	return &exitError{1, fmt.Errorf("%s refused: %v", t.name, rootCause(err))}
}

// operator names the person at the keyboard: the OS user.
func operator() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// rootCause is the innermost error's message: a validator's reason without
// the SDK's wrapping.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
