package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Error types of a refused submission (non-retryable).
const (
	// ErrTypeInvalidFile: the file has problems; the message is the whole
	// row/field report (which never quotes PPU values).
	ErrTypeInvalidFile = "InvalidBulkChangeFile"
	// ErrTypeOutsideInbox: the file is not inside an inbox directory.
	ErrTypeOutsideInbox = "FileOutsideInbox"
)

// SubmissionSettings are what a submission through Temporal uses where the
// starter would use its flags: the worker's configuration.
type SubmissionSettings struct {
	InboxDirs            []string
	Account              string
	BatchSize            int
	Options              api.Options
	ActionsPerLinePerDay int
	Approval             *submission.ApprovalRule
}

// SubmitFileInput is one SubmitBulkChange.
type SubmitFileInput struct {
	Input      api.SubmitInput `json:"input"`
	WorkflowID string          `json:"workflowId"`
	RunID      string          `json:"runId"`
}

// SubmitFile validates a bulk change named in a SubmitBulkChange workflow,
// writes it and starts its workflow, as `starter submit` does. Without an
// idempotency key of the operator's, the key is the submission's content,
// as for `starter submit`: a retried attempt, or a second submission of the
// same file, finds the bulk change the first one wrote.
func (a *Activities) SubmitFile(ctx context.Context, in SubmitFileInput) (*api.SubmitResult, error) {
	s := a.Submissions
	req := submission.Request{
		DefaultOperation:     in.Input.DefaultOperation,
		Account:              firstOf(in.Input.Account, s.Account),
		IdempotencyKey:       in.Input.IdempotencyKey,
		SubmittedBy:          firstOf(in.Input.SubmittedBy, "temporal:"+in.WorkflowID),
		BatchSize:            s.BatchSize,
		Options:              s.Options,
		ActionsPerLinePerDay: s.ActionsPerLinePerDay,
		Approval:             s.Approval,
	}
	if in.Input.BatchSize > 0 {
		req.BatchSize = in.Input.BatchSize
	}
	if in.Input.File != "" {
		path, err := inInbox(in.Input.File, s.InboxDirs)
		if err != nil {
			return nil, permanent(ErrTypeOutsideInbox, "%v", err)
		}
		req.File = path
	} else {
		data, err := json.Marshal(in.Input.Devices)
		if err != nil {
			return nil, permanent(ErrTypeInvalidData, "devices: %v", err)
		}
		req.File, req.Data, req.Format = "inline devices of "+in.WorkflowID, data, "json"
	}
	sub := &submission.Submitter{Store: a.Store, Temporal: a.Temporal}
	res, err := sub.Submit(ctx, req)
	var ve *changefile.ValidationError
	switch {
	case errors.As(err, &ve):
		return nil, permanent(ErrTypeInvalidFile, "%s: nothing was submitted\n%s", in.Input.File, ve.Error())
	case err != nil:
		return nil, fmt.Errorf("submit: %w", err)
	}
	out := &api.SubmitResult{BulkChangeID: res.ID, WorkflowID: res.WorkflowID, Created: res.Created,
		Devices: res.BulkChange.Total, Batches: res.BulkChange.Batches}
	if res.Plan != nil {
		out.Warnings = res.Plan.Warnings
	}
	return out, nil
}

// inInbox resolves a file named in a submission inside one of the inbox
// directories. A path that leads out of every inbox (.., an absolute path
// elsewhere, a symbolic link pointing out) is refused: a workflow's input
// must not be a way to read any file the worker can.
func inInbox(name string, inboxes []string) (string, error) {
	if len(inboxes) == 0 {
		return "", errors.New(
			"no inbox directory is configured (submission.inbox_dirs): submit a file with the starter, or give devices inline",
		)
	}
	if strings.Contains(filepath.ToSlash(name), "..") {
		return "", fmt.Errorf("file %q: .. is not allowed; name a file inside an inbox directory", name)
	}
	for _, inbox := range inboxes {
		root, err := filepath.EvalSymlinks(inbox)
		if err != nil {
			continue
		}
		candidate := name
		if !filepath.IsAbs(candidate) {
			candidate = filepath.Join(root, name)
		}
		// The file as it really is, links followed: a link inside the
		// inbox that points out of it is out of it.
		real, err := filepath.EvalSymlinks(candidate)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(root, real); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return real, nil
		}
	}
	return "", fmt.Errorf("file %q is not inside an inbox directory (%s)", name, strings.Join(inboxes, ", "))
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
