package db

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/iot-ops/tsbulk/change"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
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
	Operation change.Operation
	Params    json.RawMessage
	PPU       json.RawMessage
	// DeleteAfterDeactivation is the deleteAfterDeactivation value of the
	// last request built for the change (SetDeleteAfterDeactivation); nil
	// when none was.
	DeleteAfterDeactivation *bool
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
	return scanned(&r, row.Scan(&r.PK, &r.BulkChangeID, &r.Key, &r.Operation, &r.AccountName, &r.State, &r.RequestID,
		&r.Devices, &r.Attempts, &r.ErrorCode, &r.ErrorMessage, &r.SentAt))
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
	Success      bool        `json:"success"`
	FaultCode    change.Code `json:"faultCode,omitempty"`
	FaultMessage string      `json:"faultMessage,omitempty"`
	State        string      `json:"state,omitempty"`
	MSISDN       string      `json:"msisdn,omitempty"`
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
		return updateSubmitting(ctx, tx, requestPK,
			`status = 'SUBMITTED', request_id = nullif($2, ''), submitted_at = now()`, requestID)
	})
}

// updateSubmitting applies set (an SQL SET list whose arguments are $2 on)
// to the device changes a request still holds in flight.
func updateSubmitting(ctx context.Context, tx pgx.Tx, requestPK int64, set string, args ...any) error {
	_, err := tx.Exec(
		ctx,
		`UPDATE device_changes SET `+set+` WHERE request_pk = $1 AND status = 'SUBMITTING'`,
		append([]any{requestPK}, args...)...,
	)
	return err
}

// MarkRequestRejected records that ThingSpace refused the whole request: its
// devices end as ERROR with ThingSpace's code, and are no longer in flight.
func (s *Store) MarkRequestRejected(ctx context.Context, requestPK int64, code change.Code, message string) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := rejectRequest(ctx, tx, requestPK, string(code), message); err != nil {
			return err
		}
		return updateSubmitting(ctx, tx, requestPK,
			`status = 'ERROR', error_code = $2, error_message = $3, completed_at = now()`, code, message)
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
		if err := rejectRequest(ctx, tx, requestPK, code, message); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		return updateSubmitting(ctx, tx, requestPK, `status = 'SUBMITTED'`)
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
	return rejectRequest(ctx, s.Pool, requestPK, code, message)
}

// execer runs a statement: the pool, or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// rejectRequest records that ThingSpace refused a request: REJECTED, with
// its code and message.
func rejectRequest(ctx context.Context, q execer, requestPK int64, code, message string) error {
	_, err := q.Exec(ctx, `UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3,
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

// SetDeleteAfterDeactivation records the deleteAfterDeactivation value a
// deactivation request carries for its device changes. It is written before
// the request is sent: an attempt whose answer is lost is reconciled, and
// its devices polled, knowing whether a device absent from ThingSpace's list
// was removed because it was asked.
func (s *Store) SetDeleteAfterDeactivation(ctx context.Context, ids []int64, value bool) error {
	_, err := s.Pool.Exec(ctx, `UPDATE device_changes SET delete_after_deactivation = $2
		WHERE id = ANY($1) AND status = 'SUBMITTING'`, ids, value)
	if err != nil {
		return fmt.Errorf("record deleteAfterDeactivation of %d device changes: %w", len(ids), err)
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
		FROM thingspace_requests WHERE bulk_change_id = $1`, bulkID).
		Scan(&st.Requests, &st.Attempts, &st.Devices, &st.First, &st.Last)
	return st, err
}

// FailUnsent ends, as ERROR with the given reason, every device change of
// the bulk change from batch fromBatch on that ThingSpace never accepted:
// pending ones, and those of requests (sub-requests of a split batch
// included) still being sent. It returns how many it ended.
func (s *Store) FailUnsent(
	ctx context.Context,
	bulkID string,
	fromBatch int,
	code change.Code,
	message string,
) (int, error) {
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

// DeviceChangesWithCallbacks reports which of the device changes of a
// request have a stored callback of that request: proof that it reached
// ThingSpace. A callback counts when it carries the request's requestId,
// or, the requestId being unknown (the answer was lost), when it was
// received after the request row was created and its requestId belongs to
// no other request of ours: a stale or redelivered callback of an earlier
// request of the same device proves nothing about this one.
func (s *Store) DeviceChangesWithCallbacks(ctx context.Context, requestPK int64, ids []int64) (map[int64]bool, error) {
	rows, err := s.Pool.Query(
		ctx,
		`SELECT DISTINCT c.device_change_id FROM callbacks c JOIN thingspace_requests r ON r.id = $1
		WHERE c.device_change_id = ANY($2)
		  AND (c.request_id = r.request_id
		       OR (c.received_at >= r.created_at
		           AND NOT EXISTS (SELECT 1 FROM thingspace_requests o WHERE o.request_id = c.request_id AND o.id <> r.id)))`,
		requestPK,
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
