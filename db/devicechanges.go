package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/thingspace"
)

// DeviceChange is one row of device_changes (PPU excluded: it is read only
// where a ThingSpace request is built).
type DeviceChange struct {
	ID            int64
	BulkChangeID  string
	Seq           int
	RowNumber     int
	ICCID         string
	IMEI          string
	Operation     change.Operation
	BatchNo       int
	Params        json.RawMessage
	HasPPU        bool
	Billing       json.RawMessage
	Status        change.Status
	RequestID     string
	SyncResult    *SyncResult
	Outcome       string
	FinalState    string
	MSISDN        string
	ErrorCode     change.Code
	ErrorMessage  string
	ConfirmedBy   string
	BillingStatus change.BillingStatus
	BillingError  string
	// BillingErrorCode says why the Rev.io step failed: the failure's error
	// type (MSISDN_UNKNOWN, RevioError, ...).
	BillingErrorCode string
	AccountName      string
	// SentAt: ThingSpace accepted the request that carried the change
	// (column submitted_at).
	SentAt      *time.Time
	CompletedAt *time.Time
	// RemovedFromThingSpace: the deactivation succeeded with
	// deleteAfterDeactivation; ThingSpace no longer has the device.
	RemovedFromThingSpace bool
}

const changeColumns = `dc.id, dc.bulk_change_id, dc.seq, dc.row_number, dc.iccid, coalesce(dc.imei, ''), dc.operation, dc.batch_no,
	dc.params, dc.ppu IS NOT NULL, dc.billing, dc.status, coalesce(dc.request_id, ''), dc.sync_result,
	coalesce(dc.outcome, ''), coalesce(dc.final_state, ''), coalesce(dc.msisdn, ''), coalesce(dc.error_code, ''),
	coalesce(dc.error_message, ''), coalesce(dc.confirmed_by, ''), dc.billing_status, coalesce(dc.billing_error, ''),
	coalesce(dc.billing_error_code, ''), b.account_name, dc.submitted_at, dc.completed_at, dc.removed_from_thingspace`

func scanChange(row pgx.Row) (*DeviceChange, error) {
	var d DeviceChange
	var sync []byte
	err := row.Scan(&d.ID, &d.BulkChangeID, &d.Seq, &d.RowNumber, &d.ICCID, &d.IMEI, &d.Operation, &d.BatchNo,
		&d.Params, &d.HasPPU, &d.Billing, &d.Status, &d.RequestID, &sync,
		&d.Outcome, &d.FinalState, &d.MSISDN, &d.ErrorCode,
		&d.ErrorMessage, &d.ConfirmedBy, &d.BillingStatus, &d.BillingError,
		&d.BillingErrorCode, &d.AccountName, &d.SentAt, &d.CompletedAt, &d.RemovedFromThingSpace)
	if _, err := scanned(&d, err); err != nil {
		return nil, err
	}
	if len(sync) > 0 {
		d.SyncResult = &SyncResult{}
		if err := json.Unmarshal(sync, d.SyncResult); err != nil {
			return nil, fmt.Errorf("device change %d: sync result: %w", d.ID, err)
		}
	}
	return &d, nil
}

// Final reports whether the device change has its outcome.
func (d *DeviceChange) Final() bool {
	return d.Status.Final()
}

// GetDeviceChange reads one device change.
func (s *Store) GetDeviceChange(ctx context.Context, id int64) (*DeviceChange, error) {
	return scanChange(s.Pool.QueryRow(ctx, `SELECT `+changeColumns+` FROM device_changes dc
		JOIN bulk_changes b ON b.id = dc.bulk_change_id WHERE dc.id = $1`, id))
}

// DeviceChangePPU returns the stored PPU JSON of a device change (nil when
// none). Personal data: callers put it in the ThingSpace request only.
func (s *Store) DeviceChangePPU(ctx context.Context, id int64) (json.RawMessage, error) {
	var ppu json.RawMessage
	err := s.Pool.QueryRow(ctx, `SELECT ppu FROM device_changes WHERE id = $1`, id).Scan(&ppu)
	return ppu, err
}

// StartCursor is a position in the order children are started: batch, then
// file order.
type StartCursor struct {
	BatchNo int `json:"batchNo"`
	Seq     int `json:"seq"`
}

// DeviceToStart is what the parent workflow needs to start one child.
type DeviceToStart struct {
	ID        int64
	Seq       int
	BatchNo   int
	ICCID     string
	Operation change.Operation
}

// ListDevicesToStart pages the device changes of sent batches
// (batch_no <= maxBatch) after the cursor. Below unfinishedBelow (a batch
// number; 0 for none) only device changes without an outcome are listed:
// those batches were sent before a recovery, which counted the others.
func (s *Store) ListDevicesToStart(
	ctx context.Context,
	bulkID string,
	after StartCursor,
	maxBatch, limit, unfinishedBelow int,
) ([]DeviceToStart, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT id, seq, batch_no, iccid, operation FROM device_changes
		WHERE bulk_change_id = $1 AND batch_no <= $4 AND (batch_no, seq) > ($2, $3)
		  AND (batch_no >= $6 OR status NOT IN ('PROCESSED', 'ERROR', 'CANCELLED'))
		ORDER BY batch_no, seq LIMIT $5`, bulkID, after.BatchNo, after.Seq, maxBatch, limit, unfinishedBelow)
	if err != nil {
		return nil, fmt.Errorf("list devices to start: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DeviceToStart, error) {
		var d DeviceToStart
		err := r.Scan(&d.ID, &d.Seq, &d.BatchNo, &d.ICCID, &d.Operation)
		return d, err
	})
}

// CountBatchDevices counts the device changes of a batch.
func (s *Store) CountBatchDevices(ctx context.Context, bulkID string, batchNo int) (int, error) {
	var n int
	err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM device_changes WHERE bulk_change_id = $1 AND batch_no = $2`,
		bulkID, batchNo).Scan(&n)
	return n, err
}

// Completion is the outcome of one device change.
type Completion struct {
	DeviceChangeID int64
	Status         change.Status // PROCESSED | ERROR
	Outcome        string
	FinalState     string // our device status afterwards ("" leaves devices alone)
	MSISDN         string
	ErrorCode      change.Code
	ErrorMessage   string
	ConfirmedBy    string
	ConfirmedAt    *time.Time
	BillingPending bool // a Rev.io step follows
	RequestID      string
	// ReleaseMSISDN clears the device's MSISDN (deactivation releases it).
	ReleaseMSISDN bool
	// ObservedState is the device's state as ThingSpace last showed it,
	// for a change that ended in error ("" when unknown).
	ObservedState string
}

// Complete records the outcome of a device change, updates the device and
// writes the result to the audit log, in one transaction. It is idempotent:
// a device change already final keeps its first outcome, the stored change
// is returned and changed is false.
func (s *Store) Complete(ctx context.Context, c Completion) (dc *DeviceChange, changed bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		billing := change.BillingNone
		if c.BillingPending {
			billing = change.BillingPending
		}
		// A deactivation confirmed with deleteAfterDeactivation sent left
		// the device out of ThingSpace's inventory: ThingSpace removes it
		// once deactivated.
		// A fault text may echo the device's PPU (ThingSpace refusing an
		// address): it is recorded without it.
		if c.ErrorMessage != "" {
			var ppu []byte
			if err := tx.QueryRow(ctx, `SELECT ppu FROM device_changes WHERE id = $1`, c.DeviceChangeID).Scan(&ppu); err != nil &&
				!errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("read the PPU of device change %d: %w", c.DeviceChangeID, err)
			}
			c.ErrorMessage = thingspace.ScrubPersonal(c.ErrorMessage, ppuValues(ppu))
		}
		tag, err := tx.Exec(ctx, `
			UPDATE device_changes SET status = $2, outcome = nullif($3, ''), final_state = nullif($4, ''),
				msisdn = coalesce(nullif($5, ''), msisdn), error_code = nullif($6, ''), error_message = nullif($7, ''),
				confirmed_by = nullif($8, ''), confirmed_at = $9, completed_at = now(), billing_status = $10,
				removed_from_thingspace = ($2 = 'PROCESSED' AND operation = 'deactivate'
					AND coalesce(delete_after_deactivation, false))
			WHERE id = $1 AND status NOT IN ('PROCESSED', 'ERROR')`,
			c.DeviceChangeID, c.Status, c.Outcome, c.FinalState, c.MSISDN, c.ErrorCode, c.ErrorMessage,
			c.ConfirmedBy, c.ConfirmedAt, billing)
		if err != nil {
			return fmt.Errorf("complete device change %d: %w", c.DeviceChangeID, err)
		}
		changed = tag.RowsAffected() == 1
		if changed && c.FinalState != "" {
			if err := upsertDevice(ctx, tx, c); err != nil {
				return err
			}
		}
		// The result entry is written whether this call or an earlier one
		// completed the change, so the audit log has exactly one per device
		// change.
		_, err = tx.Exec(ctx, `
			INSERT INTO m2m_log (bulk_change_id, device_change_id, service, operation, outcome, error_code, error_message, request_id, dedupe_key)
			SELECT dc.bulk_change_id, dc.id, 'workflow', dc.operation, dc.status, dc.error_code,
				coalesce(dc.error_message, dc.outcome), coalesce(dc.request_id, nullif($2, '')), 'result:' || dc.id
			FROM device_changes dc WHERE dc.id = $1
			ON CONFLICT (dedupe_key) DO NOTHING`, c.DeviceChangeID, c.RequestID)
		if err != nil {
			return err
		}
		if changed && c.FinalState == "" {
			// An error: our view of the device keeps what it knew, or
			// learns the state ThingSpace showed, so that the device is
			// known (and can get the default site) whatever ended it.
			return noteDevice(ctx, tx, c.DeviceChangeID, c.ObservedState)
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	dc, err = s.GetDeviceChange(ctx, c.DeviceChangeID)
	return dc, changed, err
}

func upsertDevice(ctx context.Context, tx pgx.Tx, c Completion) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO devices (iccid, imei, account_name, status, msisdn, activated_at, status_changed_at, last_device_change,
			removed_from_thingspace_at, updated_at)
		SELECT dc.iccid, dc.imei, b.account_name, $2, nullif($3, ''),
			CASE WHEN $2 = 'active' AND dc.operation = 'activate' THEN now() END, now(), dc.id,
			CASE WHEN dc.removed_from_thingspace THEN now() END, now()
		FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id WHERE dc.id = $1
		ON CONFLICT (iccid) DO UPDATE SET
			-- A change that reached a final state says whether ThingSpace
			-- still has the device: removed by this deactivation, or back
			-- (added, activated) after an earlier removal.
			removed_from_thingspace_at = EXCLUDED.removed_from_thingspace_at,
			imei = coalesce(EXCLUDED.imei, devices.imei),
			account_name = EXCLUDED.account_name,
			status = EXCLUDED.status,
			msisdn = CASE WHEN $4 THEN NULL ELSE coalesce(EXCLUDED.msisdn, devices.msisdn) END,
			activated_at = coalesce(EXCLUDED.activated_at, devices.activated_at),
			status_changed_at = CASE WHEN devices.status <> EXCLUDED.status THEN now() ELSE devices.status_changed_at END,
			last_device_change = EXCLUDED.last_device_change,
			updated_at = now()`,
		c.DeviceChangeID, c.FinalState, c.MSISDN, c.ReleaseMSISDN)
	if err != nil {
		return fmt.Errorf("update device of change %d: %w", c.DeviceChangeID, err)
	}
	return nil
}

// noteDevice makes sure our view of a device whose change failed exists: a
// device seen for the first time is recorded with the state ThingSpace
// showed ("unknown" when none); a known device learns that state, if any,
// and otherwise stays as it was.
func noteDevice(ctx context.Context, tx pgx.Tx, deviceChangeID int64, observed string) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO devices (iccid, imei, account_name, status, last_device_change, updated_at)
		SELECT dc.iccid, dc.imei, b.account_name, coalesce(nullif($2, ''), 'unknown'), dc.id, now()
		FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id WHERE dc.id = $1
		ON CONFLICT (iccid) DO UPDATE SET
			status = coalesce(nullif($2, ''), devices.status),
			status_changed_at = CASE WHEN $2 <> '' AND devices.status <> $2 THEN now() ELSE devices.status_changed_at END,
			updated_at = now()`, deviceChangeID, observed)
	if err != nil {
		return fmt.Errorf("note device of change %d: %w", deviceChangeID, err)
	}
	return nil
}

// writeResultEntries writes the audit log's result entry of every device
// change of the bulk change that the current transaction ended
// (completed_at is the transaction's time), so that every device change has
// one whatever ended it.
func writeResultEntries(ctx context.Context, tx pgx.Tx, bulkID string) error {
	_, err := tx.Exec(ctx, `
		INSERT INTO m2m_log (bulk_change_id, device_change_id, service, operation, outcome, error_code, error_message, request_id, dedupe_key)
		SELECT dc.bulk_change_id, dc.id, 'workflow', dc.operation, dc.status, dc.error_code,
			coalesce(dc.error_message, dc.outcome), dc.request_id, 'result:' || dc.id
		FROM device_changes dc
		WHERE dc.bulk_change_id = $1 AND dc.status IN ('PROCESSED', 'ERROR', 'CANCELLED') AND dc.completed_at = now()
		ON CONFLICT (dedupe_key) DO NOTHING`, bulkID)
	if err != nil {
		return fmt.Errorf("write result entries of %s: %w", bulkID, err)
	}
	return nil
}

// SetBillingStatus records the result of the Rev.io step: its status, and
// for a failure its code and message.
func (s *Store) SetBillingStatus(
	ctx context.Context,
	id int64,
	status change.BillingStatus,
	code, message string,
) error {
	_, err := s.Pool.Exec(ctx, `UPDATE device_changes SET billing_status = $2, billing_error_code = nullif($3, ''),
		billing_error = nullif($4, '') WHERE id = $1`, id, status, code, message)
	if err != nil {
		return fmt.Errorf("record billing status of device change %d: %w", id, err)
	}
	return nil
}

// SetMSISDN records the MSISDN of a device change read after its outcome
// (an activation whose callback and device lookup did not carry it).
func (s *Store) SetMSISDN(ctx context.Context, id int64, msisdn string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE device_changes SET msisdn = $2 WHERE id = $1`, id, msisdn); err != nil {
			return fmt.Errorf("record MSISDN of device change %d: %w", id, err)
		}
		_, err := tx.Exec(ctx, `UPDATE devices d SET msisdn = $2, updated_at = now()
			FROM device_changes dc WHERE dc.id = $1 AND d.iccid = dc.iccid AND d.last_device_change = dc.id`, id, msisdn)
		return err
	})
}

// AssignDefaultSite gives the site to the bulk change's devices that have
// none yet and are in inventory or pending state, or whose change was an
// inventory add, whatever its outcome (the predecessor's SetDefaultSite for
// inventory and pending devices). A device of the bulk change that our view
// does not know yet (its change ended before any outcome was recorded for
// it) is recorded first.
func (s *Store) AssignDefaultSite(ctx context.Context, bulkID, site string) (int, error) {
	if site == "" {
		return 0, nil
	}
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO devices (iccid, imei, account_name, status, last_device_change, updated_at)
			SELECT dc.iccid, dc.imei, b.account_name, 'unknown', dc.id, now()
			FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id
			WHERE dc.bulk_change_id = $1 AND dc.operation = 'inventory'
			ON CONFLICT (iccid) DO NOTHING`, bulkID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			UPDATE devices d SET site = $2, updated_at = now()
			FROM device_changes dc
			WHERE dc.bulk_change_id = $1 AND d.iccid = dc.iccid AND d.site IS NULL
			  AND (dc.operation = 'inventory' OR d.status = 'preactive' OR d.status LIKE 'pending%')`, bulkID, site)
		n = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("assign default site: %w", err)
	}
	return n, nil
}

// InFlightChange finds the device change in flight for an ICCID, if any.
func (s *Store) InFlightChange(ctx context.Context, iccid string) (*DeviceChange, error) {
	return scanChange(s.Pool.QueryRow(ctx, `SELECT `+changeColumns+` FROM device_changes dc
		JOIN bulk_changes b ON b.id = dc.bulk_change_id
		WHERE dc.iccid = $1 AND dc.status IN ('SUBMITTING', 'SUBMITTED')`, iccid))
}

// OwedBilling is a device change whose Rev.io step is owed: failed, or
// pending.
type OwedBilling struct {
	ID        int64
	ICCID     string
	Operation change.Operation
	Status    change.BillingStatus // PENDING | ERROR
}

// OwedBillings pages the device changes of a bulk change whose Rev.io step
// failed or is pending, in id order.
func (s *Store) OwedBillings(ctx context.Context, bulkID string, afterID int64, limit int) ([]OwedBilling, error) {
	rows, err := s.Pool.Query(ctx, `SELECT id, iccid, operation, billing_status FROM device_changes
		WHERE bulk_change_id = $1 AND billing_status IN ('PENDING', 'ERROR') AND id > $2 ORDER BY id LIMIT $3`,
		bulkID, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list owed billing steps: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OwedBilling, error) {
		var o OwedBilling
		err := r.Scan(&o.ID, &o.ICCID, &o.Operation, &o.Status)
		return o, err
	})
}
