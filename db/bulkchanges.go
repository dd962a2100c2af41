package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/change"
)

// BulkChange is one row of bulk_changes.
type BulkChange struct {
	ID string
	// Tenant is the customer the bulk change belongs to (config.DefaultTenant
	// for those written before tenants).
	Tenant         string
	AccountName    string
	IdempotencyKey string
	SourceName     string
	SubmittedBy    string
	Status         change.BulkStatus
	Total          int
	Batches        int
	Processed      int
	Errors         int
	Cancelled      int
	ErrorMessage   string
	Options        json.RawMessage
	WorkflowID     string
	CreatedAt      time.Time
	StartedAt      *time.Time
	FinishedAt     *time.Time
	ApprovedBy     string
	// RedriveOf is the bulk change whose failed lines this one re-drives.
	RedriveOf string
	// ContentHash identifies what it was submitted with ("" for none).
	ContentHash string
}

// NewDeviceChange is one device row of a new bulk change.
type NewDeviceChange struct {
	Seq       int
	RowNumber int
	ICCID     string
	IMEI      string
	Operation change.Operation
	BatchNo   int
	Params    json.RawMessage
	PPU       json.RawMessage // nil when none
	Billing   json.RawMessage // nil when none
}

// NewBulkChange is everything written when a file is submitted.
type NewBulkChange struct {
	ID string
	// Tenant ("" = the default tenant).
	Tenant         string
	AccountName    string
	IdempotencyKey string // "" for none
	SourceName     string
	SubmittedBy    string
	Batches        int
	Options        json.RawMessage
	WorkflowID     string
	Devices        []NewDeviceChange
	// RedriveOf names the bulk change whose failed lines this re-drives.
	RedriveOf string
	// ContentHash identifies the submission's content ("" for none).
	ContentHash string
}

const bulkColumns = `id, tenant, account_name, coalesce(idempotency_key, ''), source_name, submitted_by, status,
	total, batches, processed, errors, cancelled, coalesce(error_message, ''), options, workflow_id,
	created_at, started_at, finished_at, coalesce(approved_by, ''), coalesce(redrive_of::text, ''),
	coalesce(content_hash, '')`

func scanBulk(row pgx.Row) (*BulkChange, error) {
	var b BulkChange
	return scanned(&b, row.Scan(&b.ID, &b.Tenant, &b.AccountName, &b.IdempotencyKey, &b.SourceName, &b.SubmittedBy, &b.Status,
		&b.Total, &b.Batches, &b.Processed, &b.Errors, &b.Cancelled, &b.ErrorMessage, &b.Options, &b.WorkflowID,
		&b.CreatedAt, &b.StartedAt, &b.FinishedAt, &b.ApprovedBy, &b.RedriveOf, &b.ContentHash))
}

// CreateBulkChange writes the bulk change and all its device changes in one
// transaction. When the idempotency key was used before, nothing is written
// and the existing bulk change is returned with created=false.
func (s *Store) CreateBulkChange(ctx context.Context, n NewBulkChange) (b *BulkChange, created bool, err error) {
	if n.Tenant == "" {
		n.Tenant = change.DefaultTenant
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var key any
		if n.IdempotencyKey != "" {
			key = n.IdempotencyKey
		}
		options := n.Options
		if options == nil {
			options = json.RawMessage(`{}`)
		}
		tag, err := tx.Exec(
			ctx,
			`
			INSERT INTO bulk_changes (id, account_name, idempotency_key, source_name, submitted_by, total, batches, options, workflow_id,
				redrive_of, content_hash, tenant)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nullif($10, '')::uuid, nullif($11, ''), $12)
			ON CONFLICT (tenant, idempotency_key) DO NOTHING`,
			n.ID,
			n.AccountName,
			key,
			n.SourceName,
			n.SubmittedBy,
			len(n.Devices),
			n.Batches,
			options,
			n.WorkflowID,
			n.RedriveOf,
			n.ContentHash,
			n.Tenant,
		)
		if err != nil {
			return fmt.Errorf("insert bulk change: %w", err)
		}
		if tag.RowsAffected() == 0 {
			b, err = scanBulk(
				tx.QueryRow(
					ctx,
					`SELECT `+bulkColumns+` FROM bulk_changes WHERE tenant = $1 AND idempotency_key = $2`,
					n.Tenant, n.IdempotencyKey,
				),
			)
			return err
		}
		created = true
		rows := make([][]any, len(n.Devices))
		for i, d := range n.Devices {
			params := d.Params
			if params == nil {
				params = json.RawMessage(`{}`)
			}
			rows[i] = []any{n.ID, d.Seq, d.RowNumber, d.ICCID, nullable(d.IMEI), d.Operation, d.BatchNo,
				params, nullJSON(d.PPU), nullJSON(d.Billing)}
		}
		// COPY: a 100,000-device file is written in one round trip.
		_, err = tx.CopyFrom(
			ctx,
			pgx.Identifier{"device_changes"},
			[]string{
				"bulk_change_id",
				"seq",
				"row_number",
				"iccid",
				"imei",
				"operation",
				"batch_no",
				"params",
				"ppu",
				"billing",
			},
			pgx.CopyFromRows(rows),
		)
		if err != nil {
			return fmt.Errorf("insert device changes: %w", err)
		}
		b, err = scanBulk(tx.QueryRow(ctx, `SELECT `+bulkColumns+` FROM bulk_changes WHERE id = $1`, n.ID))
		return err
	})
	return b, created, err
}

// GetBulkChange reads one bulk change.
func (s *Store) GetBulkChange(ctx context.Context, id string) (*BulkChange, error) {
	return scanBulk(s.Pool.QueryRow(ctx, `SELECT `+bulkColumns+` FROM bulk_changes WHERE id = $1`, id))
}

// FailBulkChange ends a bulk change that could not run (for example bad
// ThingSpace credentials): every device change not yet sent becomes ERROR
// with the reason, so the results still list every device.
func (s *Store) FailBulkChange(ctx context.Context, id string, code change.Code, message string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			UPDATE device_changes SET status = 'ERROR', error_code = $2, error_message = $3, completed_at = now()
			WHERE bulk_change_id = $1 AND status = 'PENDING'`, id, code, message); err != nil {
			return err
		}
		if err := writeResultEntries(ctx, tx, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			UPDATE bulk_changes b SET status = 'FAILED', error_message = $2, finished_at = coalesce(finished_at, now()),
				processed = (SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status = 'PROCESSED'),
				errors = (SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status = 'ERROR')
			WHERE id = $1`, id, message)
		return err
	})
}

// FinishBulkChange marks the bulk change ended (FINISHED, or CANCELLED by
// an operator) with its counts taken from the device changes themselves,
// unless some of its device changes still owe a Rev.io step (billing
// PENDING): then it changes nothing and returns how many do.
func (s *Store) FinishBulkChange(
	ctx context.Context,
	id string,
	status change.BulkStatus,
) (b *BulkChange, billingOwed int, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM device_changes
			WHERE bulk_change_id = $1 AND billing_status = 'PENDING'`, id).Scan(&billingOwed); err != nil {
			return err
		}
		if billingOwed > 0 {
			return nil
		}
		_, err := tx.Exec(ctx, `
			UPDATE bulk_changes b SET status = $2, finished_at = coalesce(finished_at, now()),
				processed = (SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status = 'PROCESSED'),
				errors = (SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status = 'ERROR'),
				cancelled = (SELECT count(*) FROM device_changes WHERE bulk_change_id = b.id AND status = 'CANCELLED')
			WHERE id = $1 AND status NOT IN ('FAILED')`, id, status)
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("finish bulk change: %w", err)
	}
	b, err = s.GetBulkChange(ctx, id)
	return b, billingOwed, err
}

// SetBulkStatus records a bulk change's status; an ended one keeps its own.
func (s *Store) SetBulkStatus(ctx context.Context, id string, status change.BulkStatus) error {
	_, err := s.Pool.Exec(ctx, `UPDATE bulk_changes SET status = $2, started_at = CASE WHEN $2 = 'RUNNING'
		THEN coalesce(started_at, now()) ELSE started_at END WHERE id = $1 AND status NOT IN ('FINISHED', 'FAILED', 'CANCELLED')`,
		id, status)
	if err != nil {
		return fmt.Errorf("set status of %s: %w", id, err)
	}
	return nil
}

// OperatorAction is an operator's request to a bulk change.
type OperatorAction struct {
	BulkChangeID, Action, By, Reason, Key string
	// Identity is the Temporal client identity the request came with (""
	// when unknown): beside By, which is only what the operator typed.
	Identity string
	// Status is the bulk change's new status ("" leaves it as it is).
	Status change.BulkStatus
}

// RecordOperatorAction writes the request to the audit log (once per key)
// with the bulk change's new status, and for an approval, the approver.
func (s *Store) RecordOperatorAction(ctx context.Context, a OperatorAction) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		body, err := json.Marshal(map[string]string{"by": a.By, "reason": a.Reason, "status": string(a.Status),
			"identity": a.Identity})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO m2m_log (bulk_change_id, service, operation, request_body, outcome, error_message, dedupe_key)
			VALUES ($1::uuid, 'operator', $2, $3, 'ok', nullif($4, ''), 'operator:' || $1::text || ':' || $5)
			ON CONFLICT (dedupe_key) DO NOTHING`,
			a.BulkChangeID, a.Action, string(body), a.By+": "+a.Reason, a.Key); err != nil {
			return err
		}
		if a.Action == "approve" {
			if _, err := tx.Exec(ctx, `UPDATE bulk_changes SET approved_by = $2, approved_at = coalesce(approved_at, now())
				WHERE id = $1`, a.BulkChangeID, a.By); err != nil {
				return err
			}
		}
		if a.Status == "" {
			return nil
		}
		_, err = tx.Exec(
			ctx,
			`UPDATE bulk_changes SET status = $2 WHERE id = $1 AND status NOT IN ('FINISHED', 'FAILED', 'CANCELLED')`,
			a.BulkChangeID,
			a.Status,
		)
		return err
	})
}

// CancelUnsent ends the device changes of a bulk change not yet sent
// (PENDING) as CANCELLED with the message, with their audit result entries,
// and returns how many per operation.
func (s *Store) CancelUnsent(ctx context.Context, bulkID, message string) (map[change.Operation]int, error) {
	var out map[change.Operation]int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH cancelled AS (
				UPDATE device_changes SET status = 'CANCELLED', error_message = $2, completed_at = now()
				WHERE bulk_change_id = $1 AND status = 'PENDING' RETURNING operation)
			SELECT operation, count(*) FROM cancelled GROUP BY 1`, bulkID, message)
		if err != nil {
			return err
		}
		if out, err = countsBy[change.Operation](rows); err != nil {
			return err
		}
		return writeResultEntries(ctx, tx, bulkID)
	})
	return out, err
}

// ListBulkChanges returns the newest bulk changes first, of one tenant
// ("" = every tenant).
func (s *Store) ListBulkChanges(ctx context.Context, tenant string, limit int) ([]BulkChange, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+bulkColumns+` FROM bulk_changes
		WHERE $1 = '' OR tenant = $1 ORDER BY created_at DESC LIMIT $2`, tenant, limit)
	if err != nil {
		return nil, err
	}
	return scanRows(rows, value(scanBulk))
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// BulkChangeByKey finds a tenant's bulk change by its idempotency key.
func (s *Store) BulkChangeByKey(ctx context.Context, tenant, key string) (*BulkChange, error) {
	return scanBulk(s.Pool.QueryRow(ctx, `SELECT `+bulkColumns+` FROM bulk_changes WHERE tenant = $1 AND idempotency_key = $2`,
		tenant, key))
}

// BulkChangeTenant is the tenant a bulk change belongs to. It never
// changes, so callers may keep it.
func (s *Store) BulkChangeTenant(ctx context.Context, id string) (string, error) {
	var tenant string
	if _, err := scanned(&tenant, s.Pool.QueryRow(ctx, `SELECT tenant FROM bulk_changes WHERE id = $1`, id).Scan(&tenant)); err != nil {
		return "", fmt.Errorf("tenant of bulk change %s: %w", id, err)
	}
	return tenant, nil
}

// LineUse is what a line (ICCID) already has going on.
type LineUse struct {
	// Last24h counts state changes ThingSpace accepted in the last 24 hours.
	Last24h int
	// Queued counts state changes waiting in unfinished bulk changes.
	Queued int
	// OpenBulkChanges lists unfinished bulk changes of the tenant asking
	// that will change the line.
	OpenBulkChanges []string
	// OtherTenants counts unfinished bulk changes of other tenants that
	// will change the line: named to no tenant but their own.
	OtherTenants int
}

// UnstartedAfter is how long a bulk change may stay PENDING (written, its
// workflow's first activity not yet run) before it is taken for one whose
// workflow never started: its device changes then no longer count as
// queued against a line's daily limit at submission. Excluding them there
// is safe: the limit is checked again, on what ThingSpace accepted, when
// each batch is sent; and submitting the same file again (or with the same
// idempotency key) starts the bulk change instead of writing another.
const UnstartedAfter = 15 * time.Minute

// LineUsage reports, for the given ICCIDs, their recent and queued state
// changes. ICCIDs with nothing going on are absent. Device changes of bulk
// changes whose workflow never started (PENDING for UnstartedAfter) are
// neither queued nor open. The counts are every tenant's (ThingSpace's
// limit is the line's), the open bulk changes listed only tenant's ("" =
// every tenant's).
func (s *Store) LineUsage(ctx context.Context, tenant string, iccids []string) (map[string]LineUse, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT dc.iccid,
			count(*) FILTER (WHERE dc.operation <> 'inventory' AND dc.submitted_at > now() - interval '24 hours'),
			count(*) FILTER (WHERE dc.operation <> 'inventory' AND dc.status = 'PENDING' AND NOT b.unstarted),
			coalesce(array_agg(DISTINCT dc.bulk_change_id::text) FILTER (
				WHERE dc.status IN ('PENDING', 'SUBMITTING', 'SUBMITTED') AND NOT b.unstarted
					AND ($3 = '' OR b.tenant = $3)), '{}'),
			count(DISTINCT dc.bulk_change_id) FILTER (
				WHERE dc.status IN ('PENDING', 'SUBMITTING', 'SUBMITTED') AND NOT b.unstarted
					AND $3 <> '' AND b.tenant <> $3)
		FROM device_changes dc
		JOIN LATERAL (SELECT bc.status = 'PENDING' AND bc.created_at < now() - $2::interval AS unstarted, bc.tenant
			FROM bulk_changes bc WHERE bc.id = dc.bulk_change_id) b ON true
		WHERE dc.iccid = ANY($1)
		GROUP BY dc.iccid`, iccids, UnstartedAfter, tenant)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]LineUse{}
	for rows.Next() {
		var iccid string
		var u LineUse
		if err := rows.Scan(&iccid, &u.Last24h, &u.Queued, &u.OpenBulkChanges, &u.OtherTenants); err != nil {
			return nil, err
		}
		if u.Last24h > 0 || u.Queued > 0 || len(u.OpenBulkChanges) > 0 || u.OtherTenants > 0 {
			out[iccid] = u
		}
	}
	return out, rows.Err()
}

// BulkOperations lists the operations of a bulk change's device changes.
func (s *Store) BulkOperations(ctx context.Context, id string) ([]string, error) {
	rows, err := s.Pool.Query(
		ctx,
		`SELECT DISTINCT operation FROM device_changes WHERE bulk_change_id = $1 ORDER BY 1`,
		id,
	)
	if err != nil {
		return nil, fmt.Errorf("operations of %s: %w", id, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// BulkOperationCounts counts a bulk change's device changes per operation.
func (s *Store) BulkOperationCounts(ctx context.Context, id string) (map[string]int, error) {
	rows, err := s.Pool.Query(
		ctx,
		`SELECT operation, count(*) FROM device_changes WHERE bulk_change_id = $1 GROUP BY 1`,
		id,
	)
	if err != nil {
		return nil, fmt.Errorf("operations of %s: %w", id, err)
	}
	counts, err := countsBy[string](rows)
	if err != nil {
		return nil, fmt.Errorf("operations of %s: %w", id, err)
	}
	return counts, nil
}

// SetBulkApproval records the approval a bulk change runs under (the
// worker's rule applied to what its submission asked), in its options.
func (s *Store) SetBulkApproval(ctx context.Context, id string, approval any) error {
	body, err := json.Marshal(approval)
	if err != nil {
		return err
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE bulk_changes SET options = jsonb_set(options, '{approval}', $2::jsonb),
		needs_approval = true WHERE id = $1`, id, string(body)); err != nil {
		return fmt.Errorf("record the approval %s needs: %w", id, err)
	}
	return nil
}

// Redrives lists the bulk changes that re-drive a bulk change's failed
// lines, oldest first.
func (s *Store) Redrives(ctx context.Context, id string) ([]BulkChange, error) {
	rows, err := s.Pool.Query(
		ctx,
		`SELECT `+bulkColumns+` FROM bulk_changes WHERE redrive_of = $1 ORDER BY created_at`,
		id,
	)
	if err != nil {
		return nil, fmt.Errorf("re-drives of %s: %w", id, err)
	}
	return scanRows(rows, value(scanBulk))
}

// FailedChange is a failed device change with what it takes to send it
// again (PPU included: personal data, for the new request only).
type FailedChange struct {
	RowNumber int
	ICCID     string
	IMEI      string
	Operation change.Operation
	ErrorCode change.Code
	Params    json.RawMessage
	PPU       json.RawMessage
	Billing   json.RawMessage
}

// FailedChanges lists the device changes of a bulk change that ended in
// ERROR, in file order; with codes, only those with one of the codes.
func (s *Store) FailedChanges(ctx context.Context, id string, codes []string) ([]FailedChange, error) {
	rows, err := s.Pool.Query(
		ctx,
		`SELECT row_number, iccid, coalesce(imei, ''), operation, coalesce(error_code, ''), params, ppu, billing
		FROM device_changes WHERE bulk_change_id = $1 AND status = 'ERROR'
		  AND (coalesce(cardinality($2::text[]), 0) = 0 OR error_code = ANY($2)) ORDER BY seq`,
		id,
		codes,
	)
	if err != nil {
		return nil, fmt.Errorf("failed device changes of %s: %w", id, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (FailedChange, error) {
		var f FailedChange
		err := r.Scan(&f.RowNumber, &f.ICCID, &f.IMEI, &f.Operation, &f.ErrorCode, &f.Params, &f.PPU, &f.Billing)
		return f, err
	})
}

// CountRecovery counts a recovery of the bulk change by the workflow run
// runID and returns how many runs have recovered it. A retry of the same
// run counts once: the count only grows, and by one per recovered run.
func (s *Store) CountRecovery(ctx context.Context, bulkID, runID string) (int, error) {
	var n int
	err := s.Pool.QueryRow(ctx, `
		UPDATE bulk_changes
		SET recoveries = recoveries + CASE WHEN recovery_run IS DISTINCT FROM $2 THEN 1 ELSE 0 END,
			recovery_run = $2
		WHERE id = $1
		RETURNING recoveries`, bulkID, runID).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("count a recovery of %s: %w", bulkID, err)
	}
	return n, nil
}
