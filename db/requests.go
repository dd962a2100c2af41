package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/change"
	"github.com/jackc/pgx/v5"
)

// Request states. SENDING means an attempt may have reached ThingSpace
// without us learning the answer; RETRY means the last attempt certainly did
// not change anything and may be sent again (a sub-request not sent yet is
// RETRY too, with no attempt); ACCEPTED holds ThingSpace's requestId;
// REJECTED means ThingSpace refused the request: its devices ended as ERROR,
// or kept a per-device refusal, or (a split request) moved to its two
// sub-requests.
//
// Sub-requests. When ThingSpace refuses a batch's request for a reason that
// may be one device's, the request is split: its devices are divided
// between two new requests, keyed by the parent's key and a path of halves
// ("batch:7" → "batch:7/0" and "batch:7/1" → "batch:7/10" and "batch:7/11"),
// so a key names its parent and its depth, and every request of a batch
// shares the "batch:<n>" prefix. Each sub-request goes through the same
// states, is claimed SENDING before it is sent and reconciled if its answer
// is lost, exactly like a batch's first request.
const (
	RequestSending  = "SENDING"
	RequestRetry    = "RETRY"
	RequestAccepted = "ACCEPTED"
	RequestRejected = "REJECTED"
)

// ThingSpaceRequest is one row of thingspace_requests.
type ThingSpaceRequest struct {
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

// SubRequestKey names half (0 or 1) of the split request parentKey.
func SubRequestKey(parentKey string, half int) string {
	sep := ""
	if !strings.Contains(parentKey, "/") {
		sep = "/"
	}
	return fmt.Sprintf("%s%s%d", parentKey, sep, half)
}

// RequestDepth is how many splits separate a request from its batch's first
// request (0 for that one).
func RequestDepth(key string) int {
	_, path, _ := strings.Cut(key, "/")
	return len(path)
}

// BatchRootKey is the key of the first request of the batch a request or
// sub-request belongs to.
func BatchRootKey(key string) string {
	root, _, _ := strings.Cut(key, "/")
	return root
}

// PPUKey names the PPU update request of one device change.
func PPUKey(deviceChangeID int64) string { return fmt.Sprintf("ppu:%d", deviceChangeID) }

const requestColumns = `id, bulk_change_id, request_key, operation, account_name, state, coalesce(request_id, ''),
	devices, attempts, coalesce(error_code, ''), coalesce(error_message, ''), coalesce(sent_at, created_at)`

func scanRequest(row pgx.Row) (*ThingSpaceRequest, error) {
	var r ThingSpaceRequest
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
	CodeDeviceBusy        = string(change.DeviceBusy)
	CodeDailyLimit        = string(change.DailyLimit)
	CodeAuthFailed        = string(change.AuthFailed)
	CodeSubmitFailed      = string(change.SubmitFailed)
	CodeNotConfirmed      = string(change.NotConfirmed)
	CodePollStateMismatch = string(change.PollStateMismatch)
)

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

// ClaimSingle starts (or resumes) a one-device request tied to a device
// change that is already in flight, such as the PPU update of an
// already-active device.
func (s *Store) ClaimSingle(
	ctx context.Context,
	deviceChangeID int64,
	key, operation string,
) (req *ThingSpaceRequest, fresh bool, err error) {
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
	_, err := s.Pool.Exec(
		ctx,
		`UPDATE thingspace_requests SET state = 'SENDING', attempts = attempts + 1, sent_at = now()
		WHERE id = $1 AND state IN ('SENDING', 'RETRY')`,
		requestPK,
	)
	return err
}

// ClaimAttempt takes a request that may be sent again (RETRY) for one more
// attempt: SENDING from now on, as StartAttempt. It reports false when the
// request is not RETRY, for instance because another attempt of the same
// activity (an overlapping retry) took it first: that attempt sends it, and
// if it dies the request is reconciled, never sent blindly twice.
func (s *Store) ClaimAttempt(ctx context.Context, requestPK int64) (bool, error) {
	tag, err := s.Pool.Exec(
		ctx,
		`UPDATE thingspace_requests SET state = 'SENDING', attempts = attempts + 1, sent_at = now()
		WHERE id = $1 AND state = 'RETRY'`,
		requestPK,
	)
	if err != nil {
		return false, fmt.Errorf("claim attempt of request %d: %w", requestPK, err)
	}
	return tag.RowsAffected() == 1, nil
}

// MarkRequestRetry records a definite failure that changed nothing at
// ThingSpace: the request may be sent again.
func (s *Store) MarkRequestRetry(ctx context.Context, requestPK int64, code, message string) error {
	_, err := s.Pool.Exec(
		ctx,
		`UPDATE thingspace_requests SET state = 'RETRY', error_code = $2, error_message = $3, answered_at = now()
		WHERE id = $1 AND state = 'SENDING'`,
		requestPK,
		code,
		message,
	)
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
func (s *Store) MarkRequestAccepted(
	ctx context.Context,
	requestPK int64,
	requestID string,
	results map[int64]SyncResult,
) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'ACCEPTED', request_id = nullif($2, ''),
			error_code = NULL, error_message = NULL, answered_at = now() WHERE id = $1`, requestPK, requestID); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		_, err := tx.Exec(
			ctx,
			`UPDATE device_changes SET status = 'SUBMITTED', request_id = nullif($2, ''), submitted_at = now()
			WHERE request_pk = $1 AND status = 'SUBMITTING'`,
			requestPK,
			requestID,
		)
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
		_, err := tx.Exec(
			ctx,
			`UPDATE device_changes SET status = 'ERROR', error_code = $2, error_message = $3, completed_at = now()
			WHERE request_pk = $1 AND status = 'SUBMITTING'`,
			requestPK,
			code,
			message,
		)
		return err
	})
}

// MarkDeviceRefusals records a request ThingSpace refused for reasons that
// belong to its devices (a one-device request answered "already active",
// say): each device keeps its outcome in sync_result and stays in flight
// until its workflow has dealt with it.
func (s *Store) MarkDeviceRefusals(
	ctx context.Context,
	requestPK int64,
	code, message string,
	results map[int64]SyncResult,
) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3,
			answered_at = now() WHERE id = $1`, requestPK, code, message); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		_, err := tx.Exec(
			ctx,
			`UPDATE device_changes SET status = 'SUBMITTED' WHERE request_pk = $1 AND status = 'SUBMITTING'`,
			requestPK,
		)
		return err
	})
}

// ErrNotSending is returned by SplitRequest for a request whose answer was
// already recorded: an earlier attempt dealt with it.
var ErrNotSending = errors.New("request is not being sent")

// SplitRequest records that ThingSpace refused a request for a reason that
// may belong to only some of its devices, and divides the devices (in file
// order, the first half rounded up) between two new sub-requests, in one
// transaction. The refused request becomes REJECTED with ThingSpace's code
// and keeps no device; each sub-request starts RETRY with no attempt (never
// sent, so safe to send) and is sent like any request: StartAttempt, then
// its answer. It returns the sub-requests.
func (s *Store) SplitRequest(ctx context.Context, requestPK int64, code, message string) ([]*ThingSpaceRequest, error) {
	var children []*ThingSpaceRequest
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		parent, err := scanRequest(
			tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests WHERE id = $1 FOR UPDATE`, requestPK),
		)
		if err != nil {
			return fmt.Errorf("request %d: %w", requestPK, err)
		}
		if parent.State != RequestSending {
			return fmt.Errorf("split request %s (%s): %w", parent.Key, parent.State, ErrNotSending)
		}
		rows, err := tx.Query(
			ctx,
			`SELECT id FROM device_changes WHERE request_pk = $1 AND status = 'SUBMITTING' ORDER BY seq`,
			requestPK,
		)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(ids) < 2 {
			return fmt.Errorf("split request %s: %d device(s) in flight, need at least 2", parent.Key, len(ids))
		}
		half := (len(ids) + 1) / 2
		for i, part := range [][]int64{ids[:half], ids[half:]} {
			child, err := scanRequest(tx.QueryRow(ctx, `
				INSERT INTO thingspace_requests (bulk_change_id, request_key, operation, account_name, state, devices, attempts)
				VALUES ($1, $2, $3, $4, 'RETRY', $5, 0)
				RETURNING `+requestColumns, parent.BulkChangeID, SubRequestKey(parent.Key, i), parent.Operation, parent.AccountName, len(part)))
			if err != nil {
				return fmt.Errorf("record sub-request %s: %w", SubRequestKey(parent.Key, i), err)
			}
			if _, err := tx.Exec(ctx, `UPDATE device_changes SET request_pk = $2 WHERE id = ANY($1) AND status = 'SUBMITTING'`,
				part, child.PK); err != nil {
				return fmt.Errorf("move devices to sub-request %s: %w", child.Key, err)
			}
			children = append(children, child)
		}
		_, err = tx.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3,
			answered_at = now() WHERE id = $1`, requestPK, code, message)
		return err
	})
	if err != nil {
		return nil, err
	}
	return children, nil
}

// OpenSubRequests lists the sub-requests of a batch still to be sent or
// reconciled (RETRY or SENDING), shallowest first: a round of splitting
// finishes before the next begins.
func (s *Store) OpenSubRequests(ctx context.Context, bulkID string, batchNo int) ([]*ThingSpaceRequest, error) {
	rows, err := s.Pool.Query(ctx, `SELECT `+requestColumns+` FROM thingspace_requests
		WHERE bulk_change_id = $1 AND request_key LIKE $2 || '/%' AND state IN ('SENDING', 'RETRY')
		ORDER BY length(request_key), request_key`, bulkID, BatchKey(batchNo))
	if err != nil {
		return nil, fmt.Errorf("open sub-requests of batch %d: %w", batchNo, err)
	}
	defer rows.Close()
	var out []*ThingSpaceRequest
	for rows.Next() {
		r, err := scanRequest(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// RefusedByDepth counts, per depth (RequestDepth), the requests of a batch
// (rootKey: its first request's key) that ThingSpace refused, whatever
// became of their devices.
func (s *Store) RefusedByDepth(ctx context.Context, bulkID, rootKey string) (map[int]int, error) {
	rows, err := s.Pool.Query(ctx, `SELECT length(split_part(request_key, '/', 2)), count(*) FROM thingspace_requests
		WHERE bulk_change_id = $1 AND (request_key = $2 OR request_key LIKE $2 || '/%') AND state = 'REJECTED'
		GROUP BY 1`, bulkID, rootKey)
	if err != nil {
		return nil, fmt.Errorf("refused requests of %s: %w", rootKey, err)
	}
	defer rows.Close()
	out := map[int]int{}
	for rows.Next() {
		var depth, n int
		if err := rows.Scan(&depth, &n); err != nil {
			return nil, err
		}
		out[depth] = n
	}
	return out, rows.Err()
}

// BatchOutcome sums up the requests of one batch: its first request and
// the sub-requests it was split into.
type BatchOutcome struct {
	// Root is the batch's first request.
	Root ThingSpaceRequest
	// SubRequests counts the sub-requests; Accepted those ThingSpace
	// accepted (the root included).
	SubRequests int
	Accepted    int
	// Attempts counts every send of every request of the batch.
	Attempts int
}

// BatchRequests reads the outcome of a batch's requests.
func (s *Store) BatchRequests(ctx context.Context, bulkID string, batchNo int) (*BatchOutcome, error) {
	root, err := scanRequest(s.Pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests
		WHERE bulk_change_id = $1 AND request_key = $2`, bulkID, BatchKey(batchNo)))
	if err != nil {
		return nil, fmt.Errorf("request of batch %d: %w", batchNo, err)
	}
	out := &BatchOutcome{Root: *root}
	err = s.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE request_key <> $2), count(*) FILTER (WHERE state = 'ACCEPTED'),
		coalesce(sum(attempts), 0)
		FROM thingspace_requests WHERE bulk_change_id = $1 AND (request_key = $2 OR request_key LIKE $2 || '/%')`,
		bulkID, BatchKey(batchNo)).
		Scan(&out.SubRequests, &out.Accepted, &out.Attempts)
	if err != nil {
		return nil, fmt.Errorf("sub-requests of batch %d: %w", batchNo, err)
	}
	return out, nil
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
func (s *Store) ApplyReconciliation(
	ctx context.Context,
	requestPK int64,
	found []Reconciled,
) (remaining int, err error) {
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
func (s *Store) RequestByRequestID(ctx context.Context, requestID string) (*ThingSpaceRequest, error) {
	return scanRequest(
		s.Pool.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests WHERE request_id = $1`, requestID),
	)
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
	// A split request's devices are counted once, with the request that
	// first carried them (sub-requests carry them again).
	err := s.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(attempts), 0),
		coalesce(sum(devices) FILTER (WHERE request_key NOT LIKE '%/%'), 0), min(sent_at), max(answered_at)
		FROM thingspace_requests WHERE bulk_change_id = $1`, bulkID).Scan(&st.Requests, &st.Attempts, &st.Devices, &st.First, &st.Last)
	return st, err
}

// FailUnsent ends, as ERROR with the given reason, every device change of
// the bulk change from batch fromBatch on that ThingSpace never accepted:
// pending ones, and those of requests (sub-requests of a split batch
// included) still being sent. It returns how many it ended.
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
		_, err = tx.Exec(
			ctx,
			`UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3, answered_at = now()
			WHERE bulk_change_id = $1 AND state IN ('SENDING', 'RETRY') AND request_key LIKE 'batch:%'`,
			bulkID,
			code,
			message,
		)
		return err
	})
	return n, err
}

// DeviceChangesWithCallbacks reports which of the device changes have a
// stored callback: proof that a request for them reached ThingSpace.
func (s *Store) DeviceChangesWithCallbacks(ctx context.Context, ids []int64) (map[int64]bool, error) {
	rows, err := s.Pool.Query(
		ctx,
		`SELECT DISTINCT device_change_id FROM callbacks WHERE device_change_id = ANY($1)`,
		ids,
	)
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
