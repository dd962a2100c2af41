package db

// Claiming device changes for a ThingSpace request: a batch's first request
// (ClaimBatch) or a one-device request of a device change already in flight
// (ClaimSingle).

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/change"
)

// ClaimLimits are the checks made when device changes are claimed for a
// request.
type ClaimLimits struct {
	// ActionsPerLinePerDay refuses a state change on a line that already had
	// this many accepted state changes in the last 24 hours; 0 disables.
	ActionsPerLinePerDay int
}

// ClaimBatch starts (or resumes) the ThingSpace request of one batch. On the
// first call it records the request as SENDING and claims the batch's pending
// device changes, refusing those whose ICCID already has a change in flight
// or whose line reached its daily limit. Later calls return the request as it
// stands, so the caller can tell a finished request from one to resend or to
// reconcile. The claimed devices are those attached to the request and still
// in flight (none once the request was split: its devices then belong to its
// sub-requests, see OpenSubRequests).
//
// The daily limit is checked here only, once per batch: sub-requests carry
// device changes already claimed, and a request ThingSpace refused changed
// nothing, so it used up none of a line's daily actions (submitted_at, which
// the limit counts, is set only when a request is accepted).
func (s *Store) ClaimBatch(
	ctx context.Context,
	bulkID string,
	batchNo int,
	lim ClaimLimits,
) (req *ThingSpaceRequest, devs []ClaimedDevice, fresh bool, err error) {
	// Two claims that both found no request race to insert it (an attempt
	// retried while the previous one still runs), or to claim an ICCID
	// another bulk change claims at the same moment: the loser's unique
	// violation means the winner has committed, and claiming again reads
	// what it wrote.
	for attempt := 1; ; attempt++ {
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			var err error
			req, fresh, err = claimBatch(ctx, tx, bulkID, batchNo, lim)
			return err
		})
		if err == nil || !isUniqueViolation(err) || attempt == 3 {
			break
		}
	}
	if err != nil {
		if isUniqueViolation(err) {
			return nil, nil, false, fmt.Errorf(
				"claim batch %d: a device was claimed concurrently by another bulk change, retry: %w",
				batchNo,
				err,
			)
		}
		return nil, nil, false, fmt.Errorf("claim batch %d: %w", batchNo, err)
	}
	devs, err = s.RequestDevices(ctx, req.PK)
	return req, devs, fresh, err
}

// claimBatch is ClaimBatch's transaction: the batch's request as it stands
// if there is one (fresh false), or else a new one with the devices it may
// send (fresh true).
func claimBatch(
	ctx context.Context,
	tx pgx.Tx,
	bulkID string,
	batchNo int,
	lim ClaimLimits,
) (req *ThingSpaceRequest, fresh bool, err error) {
	req, err = lockBatchRequest(ctx, tx, bulkID, batchNo)
	if !errors.Is(err, ErrNotFound) {
		return req, false, err
	}
	op, account, err := batchOperation(ctx, tx, bulkID, batchNo)
	if err != nil {
		return nil, false, err
	}
	if err := refuseBusyDevices(ctx, tx, bulkID, batchNo); err != nil {
		return nil, false, err
	}
	if lim.ActionsPerLinePerDay > 0 && op != change.Inventory {
		if err := refuseOverDailyLimit(ctx, tx, bulkID, batchNo, lim.ActionsPerLinePerDay); err != nil {
			return nil, false, err
		}
	}
	req, err = insertBatchRequest(ctx, tx, bulkID, batchNo, op, account)
	if err != nil {
		return nil, false, err
	}
	return req, true, claimPendingDevices(ctx, tx, req, bulkID, batchNo)
}

// lockBatchRequest reads the batch's request, locked for the transaction;
// ErrNotFound when the batch has none yet.
func lockBatchRequest(ctx context.Context, tx pgx.Tx, bulkID string, batchNo int) (*ThingSpaceRequest, error) {
	return scanRequest(tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests
		WHERE bulk_change_id = $1 AND request_key = $2 FOR UPDATE`, bulkID, BatchKey(batchNo)))
}

// batchOperation reads the operation of a batch and the account of its bulk
// change.
func batchOperation(
	ctx context.Context,
	tx pgx.Tx,
	bulkID string,
	batchNo int,
) (op change.Operation, account string, err error) {
	err = tx.QueryRow(ctx, `
		SELECT dc.operation, b.account_name FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id
		WHERE dc.bulk_change_id = $1 AND dc.batch_no = $2 LIMIT 1`, bulkID, batchNo).Scan(&op, &account)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", fmt.Errorf("bulk change %s has no batch %d", bulkID, batchNo)
	}
	return op, account, err
}

// refuseBusyDevices ends as ERROR the batch's pending devices already being
// changed by another bulk change, named only when it is the same tenant's
// (another tenant's bulk changes are none of this one's business).
func refuseBusyDevices(ctx context.Context, tx pgx.Tx, bulkID string, batchNo int) error {
	if _, err := tx.Exec(ctx, `
		UPDATE device_changes dc SET status = 'ERROR', error_code = $3,
			error_message = 'another change of this device is in flight (' ||
				CASE WHEN ob.tenant = mine.tenant THEN 'bulk change ' || other.bulk_change_id || ', ' || other.operation
				     ELSE 'another tenant''s' END ||
				'); submit this change again once it has finished',
			completed_at = now()
		FROM device_changes other JOIN bulk_changes ob ON ob.id = other.bulk_change_id, bulk_changes mine
		WHERE dc.bulk_change_id = $1 AND dc.batch_no = $2 AND dc.status = 'PENDING' AND mine.id = $1
		  AND other.iccid = dc.iccid AND other.id <> dc.id AND other.status IN ('SUBMITTING', 'SUBMITTED')`,
		bulkID, batchNo, change.DeviceBusy); err != nil {
		return fmt.Errorf("refuse busy devices: %w", err)
	}
	return nil
}

// refuseOverDailyLimit ends as ERROR the batch's pending devices whose line
// already had limit state changes in the last 24 hours.
func refuseOverDailyLimit(ctx context.Context, tx pgx.Tx, bulkID string, batchNo, limit int) error {
	if _, err := tx.Exec(ctx, `
		UPDATE device_changes dc SET status = 'ERROR', error_code = $3,
			error_message = format('line already had %s state changes in the last 24 hours (limit %s)', recent.n, $4::int),
			completed_at = now()
		FROM (SELECT d.iccid, count(*) AS n FROM device_changes d
		      WHERE d.submitted_at > now() - interval '24 hours' AND d.operation <> 'inventory'
		      GROUP BY d.iccid) recent
		WHERE dc.bulk_change_id = $1 AND dc.batch_no = $2 AND dc.status = 'PENDING'
		  AND recent.iccid = dc.iccid AND recent.n >= $4`,
		bulkID, batchNo, change.DailyLimit, limit); err != nil {
		return fmt.Errorf("refuse devices over the daily limit: %w", err)
	}
	return nil
}

// insertBatchRequest records the batch's request as SENDING, its first
// attempt under way.
func insertBatchRequest(
	ctx context.Context,
	tx pgx.Tx,
	bulkID string,
	batchNo int,
	op change.Operation,
	account string,
) (*ThingSpaceRequest, error) {
	req, err := scanRequest(tx.QueryRow(ctx, `
		INSERT INTO thingspace_requests (bulk_change_id, request_key, operation, account_name, state, devices, attempts, sent_at)
		VALUES ($1, $2, $3, $4, 'SENDING', 0, 1, now())
		RETURNING `+requestColumns, bulkID, BatchKey(batchNo), op, account))
	if err != nil {
		return nil, fmt.Errorf("record request: %w", err)
	}
	return req, nil
}

// claimPendingDevices attaches the batch's devices still pending to the
// request (SUBMITTING) and records how many it carries; a request left with
// none is REJECTED NOTHING_TO_SEND at once.
func claimPendingDevices(ctx context.Context, tx pgx.Tx, req *ThingSpaceRequest, bulkID string, batchNo int) error {
	tag, err := tx.Exec(ctx, `
		UPDATE device_changes SET status = 'SUBMITTING', request_pk = $3
		WHERE bulk_change_id = $1 AND batch_no = $2 AND status = 'PENDING'`, bulkID, batchNo, req.PK)
	if err != nil {
		return fmt.Errorf("claim devices: %w", err)
	}
	req.Devices = int(tag.RowsAffected())
	if req.Devices == 0 {
		// Every device was refused: nothing to send.
		req.State = RequestRejected
		_, err = tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', devices = 0, attempts = 0,
			error_code = 'NOTHING_TO_SEND', answered_at = now() WHERE id = $1`, req.PK)
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE thingspace_requests SET devices = $2 WHERE id = $1`, req.PK, req.Devices)
	return err
}

// ClaimSingle starts (or resumes) a one-device request tied to a device
// change that is already in flight, such as the PPU update of an
// already-active device.
func (s *Store) ClaimSingle(
	ctx context.Context,
	deviceChangeID int64,
	key string,
	operation change.Awaited,
) (req *ThingSpaceRequest, fresh bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		fresh = false
		var bulkID, account string
		if err := tx.QueryRow(ctx, `SELECT dc.bulk_change_id, b.account_name FROM device_changes dc
			JOIN bulk_changes b ON b.id = dc.bulk_change_id WHERE dc.id = $1`, deviceChangeID).
			Scan(&bulkID, &account); err != nil {
			return fmt.Errorf("device change %d: %w", deviceChangeID, err)
		}
		var err error
		req, err = scanRequest(tx.QueryRow(ctx, `
			INSERT INTO thingspace_requests (bulk_change_id, request_key, operation, account_name, state, devices, attempts, sent_at)
			VALUES ($1, $2, $3, $4, 'SENDING', 1, 1, now())
			ON CONFLICT (bulk_change_id, request_key) DO NOTHING
			RETURNING `+requestColumns, bulkID, key, operation, account))
		if err == nil {
			fresh = true
			return nil
		}
		if errors.Is(err, ErrNotFound) {
			req, err = scanRequest(tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests
				WHERE bulk_change_id = $1 AND request_key = $2`, bulkID, key))
		}
		return err
	})
	return req, fresh, err
}

// RequestDevices lists the device changes attached to a request that are
// still being sent.
func (s *Store) RequestDevices(ctx context.Context, requestPK int64) ([]ClaimedDevice, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT id, iccid, coalesce(imei, ''), operation, params, ppu, delete_after_deactivation FROM device_changes
		WHERE request_pk = $1 AND status = 'SUBMITTING' ORDER BY seq`, requestPK)
	if err != nil {
		return nil, fmt.Errorf("request devices: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ClaimedDevice, error) {
		var d ClaimedDevice
		err := r.Scan(&d.ID, &d.ICCID, &d.IMEI, &d.Operation, &d.Params, &d.PPU, &d.DeleteAfterDeactivation)
		return d, err
	})
}
