package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Request states. SENDING means an attempt may have reached ThingSpace
// without us learning the answer; RETRY means the last attempt certainly did
// not change anything and may be sent again.
const (
	RequestSending  = "SENDING"
	RequestRetry    = "RETRY"
	RequestAccepted = "ACCEPTED"
	RequestRejected = "REJECTED"
)

// Request is one row of thingspace_requests.
type Request struct {
	PK           int64
	BulkChangeID string
	Key          string
	Operation    string
	AccountName  string
	State        string
	RequestID    string
	Devices      int
	Attempts     int
	ErrorCode    string
	ErrorMessage string
	// SentAt is when the last attempt went out.
	SentAt time.Time
}

// ClaimedDevice is a device change taken into a ThingSpace request, with
// everything needed to build that request.
type ClaimedDevice struct {
	ID        int64
	ICCID     string
	IMEI      string
	Operation string
	Params    json.RawMessage
	PPU       json.RawMessage
}

// BatchKey names the request of batch n.
func BatchKey(n int) string { return fmt.Sprintf("batch:%d", n) }

// PPUKey names the PPU update request of one device change.
func PPUKey(deviceChangeID int64) string { return fmt.Sprintf("ppu:%d", deviceChangeID) }

const requestColumns = `id, bulk_change_id, request_key, operation, account_name, state, coalesce(request_id, ''),
	devices, attempts, coalesce(error_code, ''), coalesce(error_message, ''), coalesce(sent_at, created_at)`

func scanRequest(row pgx.Row) (*Request, error) {
	var r Request
	err := row.Scan(&r.PK, &r.BulkChangeID, &r.Key, &r.Operation, &r.AccountName, &r.State, &r.RequestID,
		&r.Devices, &r.Attempts, &r.ErrorCode, &r.ErrorMessage, &r.SentAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &r, err
}

// ClaimLimits are the checks made when device changes are claimed for a
// request.
type ClaimLimits struct {
	// ActionsPerLinePerDay refuses a state change on a line that already had
	// this many accepted state changes in the last 24 hours; 0 disables.
	ActionsPerLinePerDay int
}

// Device change error codes set by the product itself (ThingSpace's own
// codes are stored as ThingSpace sends them).
const (
	CodeDeviceBusy       = "DEVICE_BUSY"
	CodeDailyLimit       = "DAILY_LIMIT"
	CodeAuthFailed       = "AUTH_FAILED"
	CodeSubmitFailed     = "SUBMIT_FAILED"
	CodeNotConfirmed     = "NOT_CONFIRMED"
	CodePollStateInvalid = "POLL_STATE_MISMATCH"
)

// ClaimBatch starts (or resumes) the ThingSpace request of one batch. On the
// first call it records the request as SENDING and claims the batch's pending
// device changes, refusing those whose ICCID already has a change in flight
// or whose line reached its daily limit. Later calls return the request as it
// stands, so the caller can tell a finished request from one to resend or to
// reconcile. The claimed devices are those attached to the request and still
// in flight.
func (s *Store) ClaimBatch(ctx context.Context, bulkID string, batchNo int, lim ClaimLimits) (req *Request, devs []ClaimedDevice, fresh bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		fresh = false
		req, err = scanRequest(tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests
			WHERE bulk_change_id = $1 AND request_key = $2 FOR UPDATE`, bulkID, BatchKey(batchNo)))
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		var op, account string
		err = tx.QueryRow(ctx, `
			SELECT dc.operation, b.account_name FROM device_changes dc JOIN bulk_changes b ON b.id = dc.bulk_change_id
			WHERE dc.bulk_change_id = $1 AND dc.batch_no = $2 LIMIT 1`, bulkID, batchNo).Scan(&op, &account)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("bulk change %s has no batch %d", bulkID, batchNo)
		}
		if err != nil {
			return err
		}
		// Refuse devices already being changed by another bulk change.
		if _, err := tx.Exec(ctx, `
			UPDATE device_changes dc SET status = 'ERROR', error_code = $3,
				error_message = 'another change of this device is in flight (bulk change ' || other.bulk_change_id || ', ' || other.operation || '); submit this change again once it has finished',
				completed_at = now()
			FROM device_changes other
			WHERE dc.bulk_change_id = $1 AND dc.batch_no = $2 AND dc.status = 'PENDING'
			  AND other.iccid = dc.iccid AND other.id <> dc.id AND other.status IN ('SUBMITTING', 'SUBMITTED')`,
			bulkID, batchNo, CodeDeviceBusy); err != nil {
			return fmt.Errorf("refuse busy devices: %w", err)
		}
		if lim.ActionsPerLinePerDay > 0 && op != "inventory" {
			if _, err := tx.Exec(ctx, `
				UPDATE device_changes dc SET status = 'ERROR', error_code = $3,
					error_message = format('line already had %s state changes in the last 24 hours (limit %s)', recent.n, $4::int),
					completed_at = now()
				FROM (SELECT d.iccid, count(*) AS n FROM device_changes d
				      WHERE d.submitted_at > now() - interval '24 hours' AND d.operation <> 'inventory'
				      GROUP BY d.iccid) recent
				WHERE dc.bulk_change_id = $1 AND dc.batch_no = $2 AND dc.status = 'PENDING'
				  AND recent.iccid = dc.iccid AND recent.n >= $4`,
				bulkID, batchNo, CodeDailyLimit, lim.ActionsPerLinePerDay); err != nil {
				return fmt.Errorf("refuse devices over the daily limit: %w", err)
			}
		}
		req, err = scanRequest(tx.QueryRow(ctx, `
			INSERT INTO thingspace_requests (bulk_change_id, request_key, operation, account_name, state, devices, attempts, sent_at)
			VALUES ($1, $2, $3, $4, 'SENDING', 0, 1, now())
			RETURNING `+requestColumns, bulkID, BatchKey(batchNo), op, account))
		if err != nil {
			return fmt.Errorf("record request: %w", err)
		}
		fresh = true
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
	})
	if err != nil {
		if isUniqueViolation(err) {
			return nil, nil, false, fmt.Errorf("claim batch %d: a device was claimed concurrently by another bulk change, retry: %w", batchNo, err)
		}
		return nil, nil, false, fmt.Errorf("claim batch %d: %w", batchNo, err)
	}
	devs, err = s.RequestDevices(ctx, req.PK)
	return req, devs, fresh, err
}

// ClaimSingle starts (or resumes) a one-device request tied to a device
// change that is already in flight, such as the PPU update of an
// already-active device.
func (s *Store) ClaimSingle(ctx context.Context, deviceChangeID int64, key, operation string) (req *Request, fresh bool, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		fresh = false
		var bulkID, account string
		if err := tx.QueryRow(ctx, `SELECT dc.bulk_change_id, b.account_name FROM device_changes dc
			JOIN bulk_changes b ON b.id = dc.bulk_change_id WHERE dc.id = $1`, deviceChangeID).Scan(&bulkID, &account); err != nil {
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
// still being submitted.
func (s *Store) RequestDevices(ctx context.Context, requestPK int64) ([]ClaimedDevice, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT id, iccid, coalesce(imei, ''), operation, params, ppu FROM device_changes
		WHERE request_pk = $1 AND status = 'SUBMITTING' ORDER BY seq`, requestPK)
	if err != nil {
		return nil, fmt.Errorf("request devices: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ClaimedDevice, error) {
		var d ClaimedDevice
		err := r.Scan(&d.ID, &d.ICCID, &d.IMEI, &d.Operation, &d.Params, &d.PPU)
		return d, err
	})
}

// StartAttempt records that the request is about to be sent (again).
func (s *Store) StartAttempt(ctx context.Context, requestPK int64) error {
	_, err := s.Pool.Exec(ctx, `UPDATE thingspace_requests SET state = 'SENDING', attempts = attempts + 1, sent_at = now()
		WHERE id = $1 AND state IN ('SENDING', 'RETRY')`, requestPK)
	return err
}

// MarkRequestRetry records a definite failure that changed nothing at
// ThingSpace: the request may be sent again.
func (s *Store) MarkRequestRetry(ctx context.Context, requestPK int64, code, message string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE thingspace_requests SET state = 'RETRY', error_code = $2, error_message = $3, answered_at = now()
		WHERE id = $1 AND state = 'SENDING'`, requestPK, code, message)
	return err
}

// SyncResult is an outcome known at submission time for one device: the
// answer of a synchronous call (/add), a device-level refusal, or the result
// of reconciling an attempt whose answer was lost. Stored as JSON.
type SyncResult struct {
	Success      bool   `json:"success"`
	FaultCode    string `json:"faultCode,omitempty"`
	FaultMessage string `json:"faultMessage,omitempty"`
	State        string `json:"state,omitempty"`
	MSISDN       string `json:"msisdn,omitempty"`
}

// MarkRequestAccepted records ThingSpace's requestId: the devices are now
// waiting for their confirmation. results, keyed by device change id, holds
// outcomes already known for some devices (synchronous answers).
func (s *Store) MarkRequestAccepted(ctx context.Context, requestPK int64, requestID string, results map[int64]SyncResult) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'ACCEPTED', request_id = nullif($2, ''),
			error_code = NULL, error_message = NULL, answered_at = now() WHERE id = $1`, requestPK, requestID); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE device_changes SET status = 'SUBMITTED', request_id = nullif($2, ''), submitted_at = now()
			WHERE request_pk = $1 AND status = 'SUBMITTING'`, requestPK, requestID)
		return err
	})
}

// MarkRequestRejected records that ThingSpace refused the whole request: its
// devices end as ERROR with ThingSpace's code, and are no longer in flight.
func (s *Store) MarkRequestRejected(ctx context.Context, requestPK int64, code, message string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3,
			answered_at = now() WHERE id = $1`, requestPK, code, message); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE device_changes SET status = 'ERROR', error_code = $2, error_message = $3, completed_at = now()
			WHERE request_pk = $1 AND status = 'SUBMITTING'`, requestPK, code, message)
		return err
	})
}

// MarkDeviceRefusals records a request ThingSpace refused for reasons that
// belong to its devices (a one-device request answered "already active",
// say): each device keeps its outcome in sync_result and stays in flight
// until its workflow has dealt with it.
func (s *Store) MarkDeviceRefusals(ctx context.Context, requestPK int64, code, message string, results map[int64]SyncResult) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3,
			answered_at = now() WHERE id = $1`, requestPK, code, message); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE device_changes SET status = 'SUBMITTED' WHERE request_pk = $1 AND status = 'SUBMITTING'`, requestPK)
		return err
	})
}

// MarkSingleAccepted records the requestId of a one-device request tied to a
// device change already in flight (its status does not change).
func (s *Store) MarkSingleAccepted(ctx context.Context, requestPK int64, requestID string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE thingspace_requests SET state = 'ACCEPTED', request_id = $2, answered_at = now(),
		error_code = NULL, error_message = NULL WHERE id = $1`, requestPK, requestID)
	return err
}

// MarkSingleRejected records a refused one-device request.
func (s *Store) MarkSingleRejected(ctx context.Context, requestPK int64, code, message string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3,
		answered_at = now() WHERE id = $1`, requestPK, code, message)
	return err
}

// Reconciled is what checking ThingSpace found for one device of a request
// whose answer was lost.
type Reconciled struct {
	DeviceChangeID int64
	// Applied: the change reached ThingSpace (the device is pending or in
	// its target state). Otherwise it did not, and may be sent again.
	Applied bool
	Result  *SyncResult // set when the outcome is already known
}

// ApplyReconciliation records the devices found changed as submitted (their
// confirmation will arrive by callback or polling, matched by ICCID since
// the requestId was lost) and returns how many are left to send again.
func (s *Store) ApplyReconciliation(ctx context.Context, requestPK int64, found []Reconciled) (remaining int, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		results := map[int64]SyncResult{}
		for _, f := range found {
			if !f.Applied {
				continue
			}
			if f.Result != nil {
				results[f.DeviceChangeID] = *f.Result
			}
			// The change reached ThingSpace with the lost attempt, which may
			// have completed long before now: its submission time is when
			// that attempt was sent (polling compares it with the device's
			// activation date).
			if _, err := tx.Exec(ctx, `UPDATE device_changes SET status = 'SUBMITTED',
				submitted_at = (SELECT coalesce(sent_at, now()) FROM thingspace_requests WHERE id = $2)
				WHERE id = $1 AND status = 'SUBMITTING'`, f.DeviceChangeID, requestPK); err != nil {
				return err
			}
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM device_changes WHERE request_pk = $1 AND status = 'SUBMITTING'`,
			requestPK).Scan(&remaining); err != nil {
			return err
		}
		state := "RETRY"
		if remaining == 0 {
			state = "ACCEPTED"
		}
		_, err := tx.Exec(ctx, `UPDATE thingspace_requests SET state = $2, error_code = 'RECONCILED',
			error_message = 'the answer to an earlier attempt was lost; device states were checked at ThingSpace', answered_at = now()
			WHERE id = $1`, requestPK, state)
		return err
	})
	return remaining, err
}

func setSyncResults(ctx context.Context, tx pgx.Tx, results map[int64]SyncResult) error {
	for id, r := range results {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE device_changes SET sync_result = $2 WHERE id = $1`, id, b); err != nil {
			return err
		}
	}
	return nil
}

// RequestByRequestID finds a request by ThingSpace's requestId.
func (s *Store) RequestByRequestID(ctx context.Context, requestID string) (*Request, error) {
	return scanRequest(s.Pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests WHERE request_id = $1`, requestID))
}

// RequestStats counts the requests of a bulk change, for progress and
// benchmarks.
type RequestStats struct {
	Requests int
	Attempts int
	Devices  int
	First    *time.Time
	Last     *time.Time
}

// BulkRequestStats summarises the ThingSpace requests of a bulk change.
func (s *Store) BulkRequestStats(ctx context.Context, bulkID string) (RequestStats, error) {
	var st RequestStats
	err := s.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(attempts), 0), coalesce(sum(devices), 0), min(sent_at), max(answered_at)
		FROM thingspace_requests WHERE bulk_change_id = $1`, bulkID).Scan(&st.Requests, &st.Attempts, &st.Devices, &st.First, &st.Last)
	return st, err
}

// FailUnsent ends, as ERROR with the given reason, every device change of
// the bulk change from batch fromBatch on that ThingSpace never accepted:
// pending ones, and those of requests still being sent. It returns how many
// it ended.
func (s *Store) FailUnsent(ctx context.Context, bulkID string, fromBatch int, code, message string) (int, error) {
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE device_changes dc SET status = 'ERROR', error_code = $3, error_message = $4, completed_at = now()
			WHERE dc.bulk_change_id = $1 AND dc.batch_no >= $2
			  AND (dc.status = 'PENDING' OR (dc.status = 'SUBMITTING' AND EXISTS (
			      SELECT 1 FROM thingspace_requests r WHERE r.id = dc.request_pk AND r.state IN ('SENDING', 'RETRY'))))`,
			bulkID, fromBatch, code, message)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		if err := writeResultEntries(ctx, tx, bulkID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3, answered_at = now()
			WHERE bulk_change_id = $1 AND state IN ('SENDING', 'RETRY') AND request_key LIKE 'batch:%'`, bulkID, code, message)
		return err
	})
	return n, err
}

// DeviceChangesWithCallbacks reports which of the device changes have a
// stored callback: proof that a request for them reached ThingSpace.
func (s *Store) DeviceChangesWithCallbacks(ctx context.Context, ids []int64) (map[int64]bool, error) {
	rows, err := s.Pool.Query(ctx, `SELECT DISTINCT device_change_id FROM callbacks WHERE device_change_id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	out := make(map[int64]bool, len(got))
	for _, id := range got {
		out[id] = true
	}
	return out, nil
}
