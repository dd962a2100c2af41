// Package submission turns an operator's file into a bulk change: it
// validates every row (the file itself, then against what PostgreSQL knows:
// per-line daily limits, changes already in flight), groups compatible
// changes into ThingSpace batches, writes the bulk change in one
// transaction and starts its workflow.
package submission

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// Request is one submission.
type Request struct {
	File string
	// Data, when set, is the bulk change itself in Format (csv or json),
	// instead of a file; File then only names it.
	Data             []byte
	Format           string
	DefaultOperation string
	// Tenant is the customer the bulk change belongs to ("" = the default
	// tenant); Account must be one of its accounts.
	Tenant         string
	Account        string
	IdempotencyKey string
	SubmittedBy    string
	BatchSize      int
	Options        api.Options
	// ActionsPerLinePerDay is ThingSpace's per-line daily limit of state
	// changes; 0 disables the check.
	ActionsPerLinePerDay int
	// Approval, when set, is the four-eyes rule: a bulk change it applies
	// to waits for a second operator's approval.
	Approval *ApprovalRule
	// Reader, when set, is the bulk change itself, a file the caller opened
	// (an inbox file, opened safely); File then names it and gives its
	// format by its extension.
	Reader io.Reader
	// MaxFileBytes bounds the file read (submission.max_file_bytes); 0 is
	// changefile's default.
	MaxFileBytes int64
	// Mappings, when set, are the tenant's Rev.io mappings: every
	// activation must then be billable, by its rev_* columns or by them
	// (ForTenant sets them).
	Mappings *BillingMappings
}

// ApprovalRule says which bulk changes need a second operator's approval:
// those with at least MinDevices changes of one of the Operations.
type ApprovalRule struct {
	Operations   []string
	MinDevices   int
	ExpiresAfter time.Duration
}

// NewApprovalRule is the rule of the approval.* settings: nil (no approval)
// when no operation needs one.
func NewApprovalRule(operations []string, minDevices int, expiresAfter time.Duration) *ApprovalRule {
	if len(operations) == 0 {
		return nil
	}
	return &ApprovalRule{Operations: operations, MinDevices: minDevices, ExpiresAfter: expiresAfter}
}

// For is the approval a planned bulk change needs under the rule (nil for
// none).
func (r *ApprovalRule) For(p *BatchPlan) *api.Approval {
	return r.ForCounts(p.ByOperation)
}

// ForCounts is the approval a bulk change with these numbers of device
// changes per operation needs under the rule (nil for none).
func (r *ApprovalRule) ForCounts(byOperation map[string]int) *api.Approval {
	if r == nil {
		return nil
	}
	var reasons []string
	for _, op := range r.Operations {
		if n := byOperation[op]; n > 0 && n >= r.MinDevices {
			reasons = append(reasons, fmt.Sprintf("%d %s", n, op))
		}
	}
	if len(reasons) == 0 {
		return nil
	}
	return &api.Approval{Reason: strings.Join(reasons, ", "), ExpiresAfter: r.ExpiresAfter}
}

// StricterApproval combines the approval a submission asked for with the
// one the worker's rule requires: the submitter may ask for more approval,
// never less. The worker's rule, when it applies, decides the reason and
// the expiry.
func StricterApproval(requested, required *api.Approval) *api.Approval {
	if required == nil {
		return requested
	}
	out := *required
	return &out
}

// Batch summarises one planned ThingSpace request.
type Batch struct {
	No        int              `json:"no"`
	Operation change.Operation `json:"operation"`
	Devices   int              `json:"devices"`
	// Request is what the request carries besides its devices (the fields
	// its devices share), for --dry-run to show.
	Request BatchRequest `json:"request"`
}

// BatchRequest holds the request-level members of a planned ThingSpace
// request, as ThingSpace names them. Personal data is not shown: a Primary
// Place of Use is only said to be there.
type BatchRequest struct {
	ServicePlan       string `json:"servicePlan,omitempty"`
	MdnZipCode        string `json:"mdnZipCode,omitempty"`
	SkuNumber         string `json:"skuNumber,omitempty"`
	PrimaryPlaceOfUse bool   `json:"primaryPlaceOfUse,omitempty"`
	ReasonCode        string `json:"reasonCode,omitempty"`
	EtfWaiver         *bool  `json:"etfWaiver,omitempty"`
	// DeleteAfterDeactivation is the file's choice; nil on a deactivation
	// means the worker's thingspace.delete_after_deactivation, resolved
	// when it sends the request.
	DeleteAfterDeactivation *bool `json:"deleteAfterDeactivation,omitempty"`
}

// batchRequest is the request-level part of d's request.
func batchRequest(d changefile.DeviceRequest) BatchRequest {
	switch d.Operation {
	case change.Activate:
		return BatchRequest{ServicePlan: d.ServicePlan, MdnZipCode: d.MdnZipCode, SkuNumber: d.SkuNumber,
			PrimaryPlaceOfUse: d.PPU != nil}
	case change.Deactivate:
		waiver := d.EtfWaiver
		return BatchRequest{ReasonCode: d.ReasonCode, EtfWaiver: &waiver, DeleteAfterDeactivation: d.DeleteAfterDeactivation}
	}
	return BatchRequest{}
}

// BatchPlan is what a submission would do: its devices, batches and warnings.
type BatchPlan struct {
	Devices     []changefile.DeviceRequest `json:"-"`
	BatchOf     []int                      `json:"-"` // batch number of each device, same order
	Batches     []Batch                    `json:"batches"`
	ByOperation map[string]int             `json:"byOperation"`
	Warnings    []string                   `json:"warnings,omitempty"`
}

// Submitter validates and submits bulk changes.
type Submitter struct {
	Store    *db.Store
	Temporal client.Client
}

// MaxBatchSize is ThingSpace's maximum devices per request for an
// operation.
func MaxBatchSize(op change.Operation) int {
	if op == change.Inventory {
		return thingspace.MaxDevicesPerAdd
	}
	return thingspace.MaxDevicesPerRequest
}

// Plan reads and validates the file and plans its batches. Every problem is
// reported at once, each with its row and field; nothing is written.
func (s *Submitter) Plan(ctx context.Context, req Request) (*BatchPlan, error) {
	devs, err := s.parse(req)
	if err != nil {
		return nil, err
	}
	if err := resolveBilling(req.Mappings, req.Account, devs); err != nil {
		return nil, err
	}
	return s.planBatches(ctx, cmp.Or(req.Tenant, change.DefaultTenant), devs, req.ActionsPerLinePerDay, shardBatchSize(req.BatchSize, req.Options, len(devs)))
}

// shardBatchSize caps the batch size of a bulk change that will run as
// shards at the shard size: a batch is one ThingSpace request and belongs
// to one shard, so a larger one would make its shard larger.
func shardBatchSize(size int, opts api.Options, devices int) int {
	if opts.ShardSize > 0 && devices > opts.ShardSize && (size <= 0 || size > opts.ShardSize) {
		return opts.ShardSize
	}
	return size
}

// planBatches checks valid device requests of a tenant's bulk change
// against the database (the per-line daily limit, changes in flight
// elsewhere) and groups them into batches of at most batchSize.
func (s *Submitter) planBatches(
	ctx context.Context,
	tenant string,
	devs []changefile.DeviceRequest,
	perDay, batchSize int,
) (*BatchPlan, error) {
	problems, warnings, err := s.checkAgainstDatabase(ctx, tenant, devs, perDay)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, &changefile.ValidationError{Errors: problems}
	}
	p := &BatchPlan{Devices: devs, ByOperation: map[string]int{}, Warnings: warnings}
	p.BatchOf, p.Batches = assignBatches(devs, batchSize)
	for _, d := range devs {
		p.ByOperation[string(d.Operation)]++
	}
	return p, nil
}

// assignBatches groups devices with the same batch key, in file order, into
// batches of at most size devices (capped by ThingSpace's maximum for the
// operation). Batches are numbered in the order their first device appears.
func assignBatches(devs []changefile.DeviceRequest, size int) ([]int, []Batch) {
	type open struct{ no, count int }
	current := map[string]*open{}
	batchOf := make([]int, len(devs))
	var batches []Batch
	for i, d := range devs {
		limit := min(max(size, 1), MaxBatchSize(d.Operation))
		key := d.BatchKey()
		o := current[key]
		if o == nil || o.count >= limit {
			batches = append(batches, Batch{No: len(batches) + 1, Operation: d.Operation, Request: batchRequest(d)})
			o = &open{no: len(batches)}
			current[key] = o
		}
		o.count++
		batches[o.no-1].Devices++
		batchOf[i] = o.no
	}
	return batchOf, batches
}

// checkAgainstDatabase refuses changes that would exceed a line's daily
// limit (so they are not discovered as ThingSpace failures later) and warns
// about ICCIDs another unfinished bulk change will also change. The limit
// counts every tenant's changes (it is the line's); the warning names only
// the tenant's own bulk changes.
func (s *Submitter) checkAgainstDatabase(
	ctx context.Context,
	tenant string,
	devs []changefile.DeviceRequest,
	perDay int,
) ([]changefile.FieldError, []string, error) {
	ids := make([]string, len(devs))
	for i, d := range devs {
		ids[i] = d.ICCID
	}
	usage, err := s.Store.LineUsage(ctx, tenant, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("check daily limits: %w", err)
	}
	var problems []changefile.FieldError
	var warnings []string
	for _, d := range devs {
		u, ok := usage[d.ICCID]
		if !ok {
			continue
		}
		if perDay > 0 && d.Operation != change.Inventory && u.Last24h+u.Queued >= perDay {
			problems = append(problems, changefile.FieldError{Row: d.Row, Field: "iccid", Message: fmt.Sprintf(
				"%s: the line already has %d state changes in the last 24 hours "+
					"and %d waiting in other bulk changes; ThingSpace allows %d a day",
				d.ICCID,
				u.Last24h,
				u.Queued,
				perDay,
			)})
			continue
		}
		if len(u.OpenBulkChanges) > 0 {
			warnings = append(
				warnings,
				fmt.Sprintf(
					"row %d: %s is also in unfinished bulk change %s; whichever reaches ThingSpace second ends as %s",
					d.Row,
					d.ICCID,
					strings.Join(u.OpenBulkChanges, ", "),
					change.DeviceBusy,
				),
			)
		}
		if u.OtherTenants > 0 {
			warnings = append(warnings, fmt.Sprintf(
				"row %d: %s is also in %d unfinished bulk change(s) of another tenant; whichever reaches ThingSpace second ends as %s",
				d.Row, d.ICCID, u.OtherTenants, change.DeviceBusy))
		}
	}
	return problems, warnings, nil
}

// Result is a submitted bulk change.
type Result struct {
	BulkChange *db.BulkChange `json:"-"`
	ID         string         `json:"bulkChangeId"`
	Created    bool           `json:"created"`
	WorkflowID string         `json:"workflowId"`
	RunID      string         `json:"runId,omitempty"`
	Plan       *BatchPlan     `json:"plan,omitempty"`
}

// Submit validates the file, writes the bulk change and its device changes
// in one transaction, and starts its workflow. With an idempotency key used
// before, it returns the existing bulk change (and makes sure its workflow
// was started) instead of creating a second one; the key used before with
// a different file is refused (KeyReusedError). Without a key, the key is
// the submission's content (ContentKey): the same file submitted again,
// after a start that failed or an answer that was lost, is the same bulk
// change.
func (s *Submitter) Submit(ctx context.Context, req Request) (*Result, error) {
	if req.Account == "" {
		return nil, errors.New("the ThingSpace account is required (--account or thingspace.account)")
	}
	if err := api.CheckOperatorText("submitted by (--as)", req.SubmittedBy, api.MaxByLength); err != nil {
		return nil, err
	}
	devs, err := s.parse(req)
	if err != nil {
		return nil, err
	}
	hash, legacy := ContentHash(req.Account, devs), legacyContentHash(req.Account, devs)
	key := req.IdempotencyKey
	if key == "" {
		key = ContentKey(hash)
	}
	// The key first, before the database checks: a retry must find the
	// bulk change it wrote, whose own device changes count as queued.
	tenant := cmp.Or(req.Tenant, change.DefaultTenant)
	b, err := s.Store.BulkChangeByKey(ctx, tenant, key)
	if errors.Is(err, db.ErrNotFound) && req.IdempotencyKey == "" {
		// Written before v2 under the content key of its time.
		b, err = s.Store.BulkChangeByKey(ctx, tenant, ContentKey(legacy))
	}
	if err == nil {
		if err := sameContent(b, key, hash, legacy); err != nil {
			return nil, err
		}
		return s.start(ctx, b, false, nil)
	} else if !errors.Is(err, db.ErrNotFound) {
		return nil, err
	}
	// After the hash: the content is the rows as given, so the same file
	// is the same submission even if the mappings changed in between (its
	// bulk change keeps the billing it was resolved with).
	if err := resolveBilling(req.Mappings, req.Account, devs); err != nil {
		return nil, err
	}
	plan, err := s.planBatches(ctx, tenant, devs, req.ActionsPerLinePerDay, shardBatchSize(req.BatchSize, req.Options, len(devs)))
	if err != nil {
		return nil, err
	}
	opts := req.Options
	opts.Approval = req.Approval.For(plan)
	return s.create(ctx, newBulk{tenant: tenant, account: req.Account, key: key, contentHash: hash, source: req.File,
		submittedBy: req.SubmittedBy, options: opts}, plan)
}

// parse reads and validates the file (or the data) of a request.
func (s *Submitter) parse(req Request) ([]changefile.DeviceRequest, error) {
	def := change.Operation("")
	if req.DefaultOperation != "" {
		op, err := change.ParseOperation(req.DefaultOperation)
		if err != nil {
			return nil, fmt.Errorf("--operation: %w", err)
		}
		def = op
	}
	opt := changefile.Options{DefaultOperation: def, MaxFileBytes: req.MaxFileBytes}
	switch {
	case req.Reader != nil:
		return changefile.ParseReader(req.Reader, req.File, opt)
	case req.Data != nil:
		return changefile.ParseData(req.Data, req.Format, opt)
	}
	return changefile.ParseFile(req.File, opt)
}

// ContentHash identifies a submission by what it asks: the account and
// every validated device change (the default operation already applied),
// in file order. It is a hex SHA-256, so the personal data the rows hold
// cannot be read back from it; the same rows give the same hash whatever
// the file's layout (CSV or JSON, column order, BOM, blank lines): a row's
// place in its file is not part of what it asks.
func ContentHash(account string, devs []changefile.DeviceRequest) string {
	return contentHash("v2", account, devs, false)
}

// legacyContentHash is the hash submissions recorded before v2, row numbers
// included: a file submitted again after the upgrade still finds the bulk
// change it wrote.
func legacyContentHash(account string, devs []changefile.DeviceRequest) string {
	return contentHash("v1", account, devs, true)
}

func contentHash(version, account string, devs []changefile.DeviceRequest, withRows bool) string {
	h := sha256.New()
	// Versioned, so that a change of the encoding never makes an old
	// submission and a new one the same.
	fmt.Fprintf(h, "tsbulk.submission.%s\x00%d:%s\x00", version, len(account), account)
	enc := json.NewEncoder(h)
	for _, d := range devs {
		if !withRows {
			d.Row = 0
		}
		// DeviceRequest has no JSON tags and no custom encoding: every
		// field, PPU and billing included, goes into the hash.
		_ = enc.Encode(d) // writing to a hash cannot fail
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ContentKey is the idempotency key of a submission without one of the
// operator's.
func ContentKey(hash string) string { return "content:" + hash }

// KeyReusedError refuses an idempotency key used before for a different
// submission.
type KeyReusedError struct {
	Key      string
	Existing *db.BulkChange
}

func (e *KeyReusedError) Error() string {
	b := e.Existing
	return fmt.Sprintf(
		"idempotency key %q was already used for bulk change %s (%s, %d devices, submitted by %s at %s) "+
			"with a different file or account; nothing was submitted: give a new --idempotency-key for this file",
		e.Key, b.ID, b.Status, b.Total, b.SubmittedBy, b.CreatedAt.UTC().Format(time.RFC3339),
	)
}

// sameContent refuses a key whose bulk change was submitted with other
// content. Bulk changes without a recorded hash (written before it was, or
// re-drives) are taken as they are.
func sameContent(b *db.BulkChange, key, hash, legacy string) error {
	if b.ContentHash != "" && b.ContentHash != hash && b.ContentHash != legacy {
		return &KeyReusedError{Key: key, Existing: b}
	}
	return nil
}

func (s *Submitter) start(ctx context.Context, b *db.BulkChange, created bool, plan *BatchPlan) (*Result, error) {
	res := &Result{BulkChange: b, ID: b.ID, Created: created, WorkflowID: b.WorkflowID, Plan: plan}
	counts, err := s.Store.BulkOperationCounts(ctx, b.ID)
	if err != nil {
		return res, err
	}
	ops := slices.Sorted(maps.Keys(counts))
	run, err := s.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        b.WorkflowID,
		TaskQueue: api.TaskQueue,
		// One workflow per bulk change, ever: a second submission finds
		// the running one, and a finished one is never run again.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		// What the Web UI's list and page show for it, instead of an id.
		StaticSummary: Summary(b, counts),
		StaticDetails: Details(b),
		// Found in the Web UI by id, account, operation and status.
		TypedSearchAttributes: temporal.NewSearchAttributes(
			api.BulkChangeIDAttr.ValueSet(b.ID),
			api.ThingSpaceAccountAttr.ValueSet(b.AccountName),
			api.OperationAttr.ValueSet(ops),
			api.BulkChangeStatusAttr.ValueSet(string(b.Status)),
			api.TenantAttr.ValueSet(b.Tenant),
		),
	}, api.BulkChangeWorkflowType, api.BulkChangeInput{BulkChangeID: b.ID, Tenant: b.Tenant})
	var already *serviceerror.WorkflowExecutionAlreadyStarted
	switch {
	case err == nil:
		res.RunID = run.GetRunID()
	case errors.As(err, &already):
		// It ran to its end already.
	default:
		return res, fmt.Errorf(
			"bulk change %s is recorded but its workflow did not start "+
				"(submit the same file again, with the same --idempotency-key if you gave one, to start it): %w",
			b.ID,
			err,
		)
	}
	return res, nil
}

// SortedOperations lists the plan's operations in a stable order.
func (p *BatchPlan) SortedOperations() []string {
	return slices.Sorted(maps.Keys(p.ByOperation))
}
