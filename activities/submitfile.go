package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"go.temporal.io/sdk/activity"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/submission"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Error types of a refused submission (non-retryable).
const (
	// ErrTypeInvalidFile: the file has problems; the message is the
	// row/field report (which never quotes PPU values), cut to its first
	// problems when long, with where the whole report is.
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
	// MaxFileBytes bounds a file read (submission.max_file_bytes).
	MaxFileBytes int64
	// ForTenant, when set, is the request of a bulk change of a tenant in
	// an account ("" = its default) from the worker's current
	// configuration (submission.ForTenant): the tenant's options, limits,
	// approval rule and Rev.io mappings. Unset, only the default tenant is
	// served, from the fields above.
	ForTenant func(tenant, account string) (submission.Request, error)
}

// SubmitFileInput is one SubmitBulkChange.
type SubmitFileInput struct {
	Input      api.SubmitInput `json:"input"`
	WorkflowID string          `json:"workflowId"`
	RunID      string          `json:"runId"`
}

// reportProblems is how many problems of a refused file its failure
// message carries: a Temporal failure is limited to 2 MB, and a file of
// 200,000 bad rows has 8 MB of report. The whole report is written beside
// the file in the inbox.
const reportProblems = 50

// reportSuffix names the whole report of a refused inbox file, beside it.
const reportSuffix = ".problems.txt"

// SubmitFile validates a bulk change named in a SubmitBulkChange workflow,
// writes it and starts its workflow, as `starter submit` does. Without an
// idempotency key of the operator's, the key is the submission's content,
// as for `starter submit`: a retried attempt, or a second submission of the
// same file, finds the bulk change the first one wrote. What no retry can
// change (a file outside the inbox or not a regular file, a file with
// problems, an unknown default operation) fails it for good.
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
		MaxFileBytes:         s.MaxFileBytes,
	}
	switch {
	case s.ForTenant != nil:
		base, err := s.ForTenant(in.Input.Tenant, in.Input.Account)
		if err != nil {
			return nil, permanent(ErrTypeInvalidData, "tenant and account: %v", err)
		}
		base.DefaultOperation, base.IdempotencyKey, base.SubmittedBy = req.DefaultOperation, req.IdempotencyKey, req.SubmittedBy
		req = base
	case in.Input.Tenant != "" && in.Input.Tenant != change.DefaultTenant:
		return nil, permanent(ErrTypeInvalidData, "tenant: %q is not served by this worker (only the default tenant)", in.Input.Tenant)
	}
	if in.Input.BatchSize > 0 {
		req.BatchSize = in.Input.BatchSize
	}
	if req.DefaultOperation != "" {
		if _, err := change.ParseOperation(req.DefaultOperation); err != nil {
			return nil, permanent(ErrTypeInvalidData, "defaultOperation: %v", err)
		}
	}
	if req.Account == "" {
		return nil, permanent(ErrTypeInvalidData, "account: the ThingSpace account is required (account or thingspace.account)")
	}
	var file *inboxFile
	if in.Input.File != "" {
		f, err := openInInbox(in.Input.File, s.InboxDirs)
		if err != nil {
			return nil, permanent(ErrTypeOutsideInbox, "%v", err)
		}
		defer f.Close()
		file = f
		req.File = f.Path()
		req.Reader = &heartbeatReader{ctx: ctx, r: f.file}
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
		return nil, permanent(ErrTypeInvalidFile, "%s", refusal(in.Input.File, file, ve))
	case errors.Is(err, changefile.ErrFormat):
		return nil, permanent(ErrTypeInvalidFile, "%s: nothing was submitted: %v", in.Input.File, err)
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

// refusal is the failure message of a file with problems: the whole report
// when it is short, else its first problems, their counts by field, and
// where the whole report is (written beside the inbox file; inline devices
// have nowhere to put it).
func refusal(name string, file *inboxFile, ve *changefile.ValidationError) string {
	if name == "" {
		name = "devices"
	}
	head := name + ": nothing was submitted\n"
	if len(ve.Errors) <= reportProblems {
		return head + ve.Error()
	}
	var where string
	switch {
	case file == nil:
		where = "the whole report is not kept for inline devices: put them in a file in an inbox directory " +
			"(submission.inbox_dirs) to have it written beside the file"
	default:
		path, err := file.writeBeside(reportSuffix, ve.Error())
		if err != nil {
			where = fmt.Sprintf("the whole report could not be written beside the file (%v); "+
				"run `starter submit --dry-run --file %s` to see it", err, name)
		} else {
			where = "the whole report is in " + path
		}
	}
	return head + ve.Summary(reportProblems) + "\n" + where
}

// heartbeatReader heartbeats as a file is read, with the bytes read so
// far: a file of 200,000 rows takes longer to check than a heartbeat
// timeout, and a worker that dies reading it is then noticed in seconds.
// Reading stops when the activity is cancelled or timed out.
type heartbeatReader struct {
	ctx  context.Context
	r    io.Reader
	read int64
	next int64
}

// heartbeatEvery is how many bytes are read between heartbeats (the SDK
// throttles them further).
const heartbeatEvery = 256 << 10

func (h *heartbeatReader) Read(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, fmt.Errorf("reading stopped: %w", err)
	}
	n, err := h.r.Read(p)
	h.read += int64(n)
	if h.read >= h.next {
		activity.RecordHeartbeat(h.ctx, h.read)
		h.next = h.read + heartbeatEvery
	}
	return n, err
}

// inboxFile is a bulk change file opened inside an inbox directory.
type inboxFile struct {
	root *os.Root
	dir  string // the inbox directory, as configured
	name string // the file, relative to dir
	file *os.File
}

// Path is the file's path, for messages and the bulk change's source.
func (f *inboxFile) Path() string { return filepath.Join(f.dir, f.name) }

func (f *inboxFile) Close() {
	_ = f.file.Close() // opened read-only: closing loses nothing
	_ = f.root.Close()
}

// writeBeside writes text to the file's name plus suffix, in the same
// inbox directory and through the same root (so not through a link out of
// it), replacing an earlier one, and returns its path.
func (f *inboxFile) writeBeside(suffix, text string) (string, error) {
	name := f.name + suffix
	// Not truncated on open: whatever has this name is checked first to be
	// a regular file (O_NONBLOCK: a FIFO does not hold the open).
	w, err := f.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return "", err
	}
	st, err := w.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", name)
	}
	if err == nil {
		err = w.Truncate(0)
	}
	if err == nil {
		_, err = w.WriteString(text)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return filepath.Join(f.dir, name), err
}

// openInInbox opens a file named in a submission inside one of the inbox
// directories. A workflow's input must not be a way to read any file the
// worker can, nor to hang it:
//
//   - the file is opened through an os.Root of the inbox, so no path (..,
//     an absolute path elsewhere) and no symbolic link, including one
//     swapped in after any check, leads out of it;
//   - its type is read through the root before it is opened (Stat), so a
//     directory, a FIFO or a device node is refused without being opened:
//     opening a FIFO waits for a writer, opening some devices acts on them;
//   - it is opened with O_NONBLOCK, so a FIFO swapped in after that Stat
//     does not hold the open either;
//   - the opened handle itself is then checked (a regular file, the same
//     file as was checked): that is the file read, whatever the name
//     points to by then.
func openInInbox(name string, inboxes []string) (*inboxFile, error) {
	if len(inboxes) == 0 {
		return nil, errors.New(
			"no inbox directory is configured (submission.inbox_dirs): submit a file with the starter, or give devices inline",
		)
	}
	if strings.Contains(filepath.ToSlash(name), "..") {
		return nil, fmt.Errorf("file %q: .. is not allowed; name a file inside an inbox directory", name)
	}
	var refused error
	for _, inbox := range inboxes {
		rel, ok := relativeTo(name, inbox)
		if !ok {
			continue
		}
		f, err := openIn(inbox, rel)
		switch {
		case err == nil:
			return f, nil
		case errors.Is(err, fs.ErrNotExist):
			continue // perhaps in the next inbox
		case refused == nil:
			refused = err
		}
	}
	if refused != nil {
		return nil, fmt.Errorf("file %q: %w", name, refused)
	}
	return nil, fmt.Errorf("file %q is not inside an inbox directory (%s)", name, strings.Join(inboxes, ", "))
}

// relativeTo is name relative to the inbox: a relative name is already; an
// absolute one must lie under the inbox as configured or as it really is
// (the inbox itself may be a link).
func relativeTo(name, inbox string) (string, bool) {
	if !filepath.IsAbs(name) {
		return name, true
	}
	dirs := []string{inbox}
	if real, err := filepath.EvalSymlinks(inbox); err == nil {
		dirs = append(dirs, real)
	}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(abs, name); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
			return rel, true
		}
	}
	return "", false
}

// openIn opens rel inside inbox (see openInInbox for the order of checks).
func openIn(inbox, rel string) (*inboxFile, error) {
	root, err := os.OpenRoot(inbox)
	if err != nil {
		return nil, fmt.Errorf("inbox %s: %w", inbox, err)
	}
	fail := func(err error) (*inboxFile, error) {
		_ = root.Close()
		return nil, err
	}
	before, err := root.Stat(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(err)
		}
		return fail(fmt.Errorf("is not inside an inbox directory (%s): %w", inbox, err))
	}
	if err := regular(before); err != nil {
		return fail(err)
	}
	f, err := root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fail(fmt.Errorf("is not inside an inbox directory (%s): %w", inbox, err))
	}
	after, err := f.Stat()
	if err == nil {
		err = regular(after)
	}
	if err == nil && !os.SameFile(before, after) {
		err = errors.New("was replaced while it was being opened; submit it again")
	}
	if err != nil {
		_ = f.Close()
		return fail(err)
	}
	return &inboxFile{root: root, dir: inbox, name: rel, file: f}, nil
}

// regular refuses anything but a regular file, saying what it is.
func regular(st fs.FileInfo) error {
	m := st.Mode()
	switch {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return errors.New("is a directory; name a bulk change file inside it")
	case m&fs.ModeNamedPipe != 0:
		return errors.New("is a named pipe (FIFO), not a regular file")
	case m&fs.ModeDevice != 0:
		return errors.New("is a device, not a regular file")
	case m&fs.ModeSocket != 0:
		return errors.New("is a socket, not a regular file")
	}
	return fmt.Errorf("is not a regular file (%s)", m.Type())
}

func firstOf(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
