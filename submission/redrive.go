package submission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/iot-ops/tsbulk/changefile"
	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// RedriveRequest asks for a new bulk change of the failed device changes of
// another.
type RedriveRequest struct {
	Original string
	// Tenant, when set, is the tenant asking: an original of another
	// tenant is refused (OtherTenantError). The re-drive is the original's
	// tenant's in any case.
	Tenant string
	// Codes keeps only the device changes that failed with one of these
	// codes (all failed ones when empty).
	Codes                []string
	SubmittedBy          string
	BatchSize            int
	Options              api.Options
	ActionsPerLinePerDay int
	Approval             *ApprovalRule
}

// Redrive creates a new bulk change of only the failed device changes of
// the original (optionally only those codes), linked to it both ways, and
// starts it. The same original and codes return the same re-drive. The new
// changes are checked as a file would be: the daily per-line limit, and the
// one-change-in-flight rule when their batches are sent.
func (s *Submitter) Redrive(ctx context.Context, req RedriveRequest) (*Result, error) {
	if err := api.CheckOperatorText("submitted by (--as)", req.SubmittedBy, api.MaxByLength); err != nil {
		return nil, err
	}
	orig, err := s.Store.GetBulkChange(ctx, req.Original)
	if err != nil {
		return nil, fmt.Errorf("bulk change %s: %w", req.Original, err)
	}
	if err := CheckTenant(orig.ID, orig.Tenant, req.Tenant); err != nil {
		return nil, err
	}
	codes := append([]string(nil), req.Codes...)
	sort.Strings(codes)
	key := "redrive:" + orig.ID + ":" + strings.Join(codes, ",")
	if b, err := s.Store.BulkChangeByKey(ctx, orig.Tenant, key); err == nil {
		return s.start(ctx, b, false, nil)
	} else if !errors.Is(err, db.ErrNotFound) {
		return nil, err
	}
	failed, err := s.Store.FailedChanges(ctx, orig.ID, codes)
	if err != nil {
		return nil, err
	}
	if len(failed) == 0 {
		what := "failed device changes"
		if len(codes) > 0 {
			what += " with code " + strings.Join(codes, " or ")
		}
		return nil, fmt.Errorf("bulk change %s has no %s: nothing to re-drive", orig.ID, what)
	}
	devs := make([]changefile.DeviceRequest, len(failed))
	for i, f := range failed {
		if devs[i], err = requestOf(f); err != nil {
			return nil, fmt.Errorf("row %d (%s): %w", f.RowNumber, f.ICCID, err)
		}
	}
	plan, err := s.planBatches(ctx, orig.Tenant, devs, req.ActionsPerLinePerDay, shardBatchSize(req.BatchSize, req.Options, len(devs)))
	if err != nil {
		return nil, err
	}
	opts := req.Options
	opts.Approval = req.Approval.For(plan)
	return s.create(ctx, newBulk{
		tenant:      orig.Tenant,
		account:     orig.AccountName,
		key:         key,
		source:      "re-drive of " + orig.ID,
		submittedBy: req.SubmittedBy,
		redriveOf:   orig.ID,
		options:     opts,
	}, plan)
}

// newBulk is what a new bulk change is written with, besides its devices.
type newBulk struct {
	tenant, account, key, contentHash, source, submittedBy, redriveOf string
	options                                                           api.Options
}

// create writes a planned bulk change in one transaction and starts it.
func (s *Submitter) create(ctx context.Context, n newBulk, plan *BatchPlan) (*Result, error) {
	id := uuid.NewString()
	opts, err := json.Marshal(n.options)
	if err != nil {
		return nil, err
	}
	nb := db.NewBulkChange{
		ID: id, Tenant: n.tenant, AccountName: n.account, IdempotencyKey: n.key, SourceName: n.source, SubmittedBy: n.submittedBy,
		Batches: len(plan.Batches), Options: opts, WorkflowID: api.BulkChangeWorkflowID(id), RedriveOf: n.redriveOf,
		ContentHash: n.contentHash,
	}
	nb.Devices = make([]db.NewDeviceChange, len(plan.Devices))
	for i, d := range plan.Devices {
		nd, err := deviceRow(i+1, d, plan.BatchOf[i])
		if err != nil {
			return nil, err
		}
		nb.Devices[i] = nd
	}
	b, created, err := s.Store.CreateBulkChange(ctx, nb)
	if err != nil {
		return nil, err
	}
	if !created {
		// The same key, written by a concurrent submission.
		if err := sameContent(b, n.key, n.contentHash, n.contentHash); err != nil {
			return nil, err
		}
	}
	return s.start(ctx, b, created, plan)
}
