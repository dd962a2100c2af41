package db

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/iot-ops/tsbulk/change"
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
	Operation    change.Awaited
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

// ErrStaleAttempt is returned by a transition of a request whose row is no
// longer in the state and at the attempt the caller read: another attempt
// claimed it since (a retry that overlapped a paused one), or recorded its
// answer. The caller has lost the request and must neither send it nor
// record anything on it.
var ErrStaleAttempt = errors.New("the request was taken over by another attempt")

// Fencing: the attempts column is the fencing token of a request. Every
// attempt reads it when it claims the request (ClaimBatch, ClaimSingle,
// ClaimAttempt, StartAttempt, each of which increments it when it starts a
// new send), and every later transition of the row is made only if the row
// is still in the state and at the attempt that attempt read (transition).
// FenceSend checks it once more right before each HTTP write.

// transition applies set (an SQL SET list whose arguments are $4 on) to the
// request row if it is still in the state and at the attempt req was read
// with; ErrStaleAttempt otherwise.
func transition(ctx context.Context, q execer, req *ThingSpaceRequest, set string, args ...any) error {
	tag, err := q.Exec(ctx, `UPDATE thingspace_requests SET `+set+` WHERE id = $1 AND state = $2 AND attempts = $3`,
		append([]any{req.PK, req.State, req.Attempts}, args...)...)
	if err != nil {
		return fmt.Errorf("update request %s: %w", req.Key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("request %s (read %s at attempt %d): %w", req.Key, req.State, req.Attempts, ErrStaleAttempt)
	}
	return nil
}

// StartAttempt records that a one-device request (a PPU update, which may
// be sent again whatever became of the last attempt) is about to be sent
// again, and makes req the new attempt's token. ErrStaleAttempt when
// another attempt took it first.
func (s *Store) StartAttempt(ctx context.Context, req *ThingSpaceRequest) error {
	err := s.Pool.QueryRow(
		ctx,
		`UPDATE thingspace_requests SET state = 'SENDING', attempts = attempts + 1, sent_at = now()
		WHERE id = $1 AND state = $2 AND attempts = $3 AND state IN ('SENDING', 'RETRY') RETURNING attempts`,
		req.PK, req.State, req.Attempts,
	).Scan(&req.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("start attempt of request %s: %w", req.Key, ErrStaleAttempt)
	}
	if err != nil {
		return fmt.Errorf("start attempt of request %s: %w", req.Key, err)
	}
	req.State = RequestSending
	return nil
}

// ClaimAttempt takes a request that may be sent again (RETRY), as req read
// it, for one more attempt: SENDING from now on, with req holding the new
// attempt's token. It reports false when the request is no longer so, for
// instance because another attempt of the same activity (an overlapping
// retry) took it first: that attempt sends it, and if it dies the request
// is reconciled, never sent blindly twice.
func (s *Store) ClaimAttempt(ctx context.Context, req *ThingSpaceRequest) (bool, error) {
	err := s.Pool.QueryRow(
		ctx,
		`UPDATE thingspace_requests SET state = 'SENDING', attempts = attempts + 1, sent_at = now()
		WHERE id = $1 AND state = 'RETRY' AND attempts = $2 RETURNING attempts`,
		req.PK, req.Attempts,
	).Scan(&req.Attempts)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("claim attempt of request %s: %w", req.Key, err)
	}
	req.State = RequestSending
	return true, nil
}

// FenceSend is the last check before an HTTP write of the request: the row
// must still be SENDING at req's attempt (ErrStaleAttempt otherwise, and
// the write must not happen). It also moves sent_at to now, committed
// before the write leaves: reconciliation measures its settle time from
// the last write any attempt was allowed to make, on the database's clock.
//
// What it cannot close: an attempt that passes the fence and is then
// paused (GC, VM) before its bytes reach ThingSpace still writes when it
// resumes. Its write is bounded by the client's per-attempt timeout, and a
// concurrent reconciliation waits the settle time from the fence, so only
// a pause of the writer longer than the settle time, falling between the
// fence and the write, can still send twice.
func (s *Store) FenceSend(ctx context.Context, req *ThingSpaceRequest) error {
	tag, err := s.Pool.Exec(ctx, `UPDATE thingspace_requests SET sent_at = now()
		WHERE id = $1 AND state = 'SENDING' AND attempts = $2`, req.PK, req.Attempts)
	if err != nil {
		return fmt.Errorf("fence request %s: %w", req.Key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("request %s (attempt %d): %w", req.Key, req.Attempts, ErrStaleAttempt)
	}
	return nil
}

// MarkRequestRetry records a definite failure that changed nothing at
// ThingSpace: the request may be sent again.
func (s *Store) MarkRequestRetry(ctx context.Context, req *ThingSpaceRequest, code, message string) error {
	return transition(ctx, s.Pool, req, `state = 'RETRY', error_code = $4, error_message = $5, answered_at = now()`,
		code, message)
}

// SyncResult is an outcome known for one device when its request was sent:
// the answer of a synchronous call (/add), a device-level refusal, or the
// result of reconciling an attempt whose answer was lost. Stored as JSON.
type SyncResult struct {
	Success      bool         `json:"success"`
	FaultCode    change.Code  `json:"faultCode,omitempty"`
	FaultMessage string       `json:"faultMessage,omitempty"`
	State        change.State `json:"state,omitempty"`
	MSISDN       string       `json:"msisdn,omitempty"`
}

// MarkRequestAccepted records ThingSpace's requestId: the devices are now
// waiting for their confirmation. results, keyed by device change id, holds
// outcomes already known for some devices (synchronous answers).
func (s *Store) MarkRequestAccepted(
	ctx context.Context,
	req *ThingSpaceRequest,
	requestID string,
	results map[int64]SyncResult,
) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := transition(ctx, tx, req, `state = 'ACCEPTED', request_id = nullif($4, ''),
			error_code = NULL, error_message = NULL, answered_at = now()`, requestID); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		return updateSending(ctx, tx, req.PK,
			`status = 'SUBMITTED', request_id = nullif($2, ''), submitted_at = now()`, requestID)
	})
}

// updateSending applies set (an SQL SET list whose arguments are $2 on)
// to the device changes a request still holds in flight.
func updateSending(ctx context.Context, tx pgx.Tx, requestPK int64, set string, args ...any) error {
	_, err := tx.Exec(
		ctx,
		`UPDATE device_changes SET `+set+` WHERE request_pk = $1 AND status = 'SUBMITTING'`,
		append([]any{requestPK}, args...)...,
	)
	return err
}

// MarkRequestRejected records that ThingSpace refused the whole request: its
// devices end as ERROR with ThingSpace's code, and are no longer in flight.
func (s *Store) MarkRequestRejected(
	ctx context.Context,
	req *ThingSpaceRequest,
	code change.Code,
	message string,
) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := rejectRequest(ctx, tx, req, string(code), message); err != nil {
			return err
		}
		return updateSending(ctx, tx, req.PK,
			`status = 'ERROR', error_code = $2, error_message = $3, completed_at = now()`, code, message)
	})
}

// MarkDeviceRefusals records a request ThingSpace refused for reasons that
// belong to its devices (a one-device request answered "already active",
// say): each device keeps its outcome in sync_result and stays in flight
// until its workflow has dealt with it.
func (s *Store) MarkDeviceRefusals(
	ctx context.Context,
	req *ThingSpaceRequest,
	code, message string,
	results map[int64]SyncResult,
) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		if err := rejectRequest(ctx, tx, req, code, message); err != nil {
			return err
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		return updateSending(ctx, tx, req.PK, `status = 'SUBMITTED'`)
	})
}

// MarkSingleAccepted records the requestId of a one-device request tied to a
// device change already in flight (its status does not change).
func (s *Store) MarkSingleAccepted(ctx context.Context, req *ThingSpaceRequest, requestID string) error {
	return transition(ctx, s.Pool, req, `state = 'ACCEPTED', request_id = $4, answered_at = now(),
		error_code = NULL, error_message = NULL`, requestID)
}

// MarkSingleRejected records a refused one-device request.
func (s *Store) MarkSingleRejected(ctx context.Context, req *ThingSpaceRequest, code, message string) error {
	return rejectRequest(ctx, s.Pool, req, code, message)
}

// execer runs a statement: the pool, or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// rejectRequest records that ThingSpace refused a request: REJECTED, with
// its code and message.
func rejectRequest(ctx context.Context, q execer, req *ThingSpaceRequest, code, message string) error {
	return transition(ctx, q, req, `state = 'REJECTED', error_code = $4, error_message = $5, answered_at = now()`,
		code, message)
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

// ApplyReconciliation records the devices found changed as sent (their
// confirmation will arrive by callback or polling, matched by ICCID since
// the requestId was lost) and returns how many are left to send again; req
// is then RETRY (or ACCEPTED when none is left), at the same attempt.
//
// Devices showing no trace of the lost attempt are taken as untouched only
// once settle has passed since the last write any attempt was allowed to
// make (sent_at, see FenceSend), measured on the database's clock alone: a
// worker whose clock is off cannot shorten it. Until then nothing is
// recorded and wait says how long is left. ErrStaleAttempt when req is no
// longer SENDING at its attempt (another attempt reconciled or claimed it).
func (s *Store) ApplyReconciliation(
	ctx context.Context,
	req *ThingSpaceRequest,
	found []Reconciled,
	settle time.Duration,
) (remaining int, wait time.Duration, err error) {
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var left float64
		err := tx.QueryRow(ctx, `SELECT extract(epoch FROM coalesce(sent_at, created_at) + make_interval(secs => $4::float8 / 1e6)
			- clock_timestamp()) FROM thingspace_requests WHERE id = $1 AND state = $2 AND attempts = $3 FOR UPDATE`,
			req.PK, req.State, req.Attempts, settle.Microseconds()).Scan(&left)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("reconcile request %s (attempt %d): %w", req.Key, req.Attempts, ErrStaleAttempt)
		}
		if err != nil {
			return err
		}
		untouched := 0
		results := map[int64]SyncResult{}
		for _, f := range found {
			if !f.Applied {
				untouched++
				continue
			}
			if f.Result != nil {
				results[f.DeviceChangeID] = *f.Result
			}
		}
		if untouched > 0 && left > 0 {
			wait = time.Duration(left * float64(time.Second))
			return nil
		}
		for _, f := range found {
			if !f.Applied {
				continue
			}
			// The change reached ThingSpace with the lost attempt, which may
			// have completed long before now: it was sent when that attempt
			// was (polling compares that with the device's activation date).
			if _, err := tx.Exec(ctx, `UPDATE device_changes SET status = 'SUBMITTED',
				submitted_at = (SELECT coalesce(sent_at, now()) FROM thingspace_requests WHERE id = $2)
				WHERE id = $1 AND status = 'SUBMITTING'`, f.DeviceChangeID, req.PK); err != nil {
				return err
			}
		}
		if err := setSyncResults(ctx, tx, results); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM device_changes WHERE request_pk = $1 AND status = 'SUBMITTING'`,
			req.PK).Scan(&remaining); err != nil {
			return err
		}
		state := RequestRetry
		if remaining == 0 {
			state = RequestAccepted
		}
		return transition(ctx, tx, req, `state = $4, error_code = 'RECONCILED',
			error_message = 'the answer to an earlier attempt was lost; device states were checked at ThingSpace',
			answered_at = now()`, state)
	})
	if err == nil && wait == 0 {
		if remaining == 0 {
			req.State = RequestAccepted
		} else {
			req.State = RequestRetry
		}
	}
	return remaining, wait, err
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
// the bulk change from batch fromBatch to toBatch (0: to its last; a shard
// ends only its own) that ThingSpace never accepted:
// pending ones, and those of requests (sub-requests of a split batch
// included) still being sent. It returns how many it ended.
func (s *Store) FailUnsent(
	ctx context.Context,
	bulkID string,
	fromBatch, toBatch int,
	code change.Code,
	message string,
) (int, error) {
	if toBatch <= 0 {
		toBatch = math.MaxInt32
	}
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `
			UPDATE device_changes dc SET status = 'ERROR', error_code = $3, error_message = $4, completed_at = now()
			WHERE dc.bulk_change_id = $1 AND dc.batch_no BETWEEN $2 AND $5
			  AND (dc.status = 'PENDING' OR (dc.status = 'SUBMITTING' AND EXISTS (
			      SELECT 1 FROM thingspace_requests r WHERE r.id = dc.request_pk AND r.state IN ('SENDING', 'RETRY'))))`,
			bulkID, fromBatch, code, message, toBatch)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		if err := writeResultEntries(ctx, tx, bulkID); err != nil {
			return err
		}
		_, err = tx.Exec(
			ctx,
			// Only the batches ended here: another shard's request in
			// flight is its own ("batch:7", "batch:7/0": the number before
			// any "/").
			`UPDATE thingspace_requests SET state = 'REJECTED', error_code = $2, error_message = $3, answered_at = now()
			WHERE bulk_change_id = $1 AND state IN ('SENDING', 'RETRY') AND request_key LIKE 'batch:%'
			  AND split_part(substr(request_key, 7), '/', 1)::int BETWEEN $4 AND $5`,
			bulkID,
			code,
			message,
			fromBatch,
			toBatch,
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
