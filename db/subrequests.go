package db

// Sub-requests: a request ThingSpace refused for a reason that may be one
// device's is split in two, and so on down (see the request states in
// requests.go).

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// SplitRequest records that ThingSpace refused a request for a reason that
// may belong to only some of its devices, and divides the devices (in file
// order, the first half rounded up) between two new sub-requests, in one
// transaction. The refused request becomes REJECTED with ThingSpace's code
// and keeps no device; each sub-request starts RETRY with no attempt (never
// sent, so safe to send) and is sent like any request: ClaimAttempt, then
// its answer. It returns the sub-requests; ErrStaleAttempt when req is no
// longer SENDING at its attempt (another attempt answered or took it).
func (s *Store) SplitRequest(
	ctx context.Context,
	req *ThingSpaceRequest,
	code, message string,
) ([]*ThingSpaceRequest, error) {
	requestPK := req.PK
	var children []*ThingSpaceRequest
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		parent, err := scanRequest(
			tx.QueryRow(ctx, `SELECT `+requestColumns+` FROM thingspace_requests WHERE id = $1 FOR UPDATE`, requestPK),
		)
		if err != nil {
			return fmt.Errorf("request %d: %w", requestPK, err)
		}
		if parent.State != RequestSending || parent.Attempts != req.Attempts {
			return fmt.Errorf("split request %s (%s at attempt %d, read at %d): %w",
				parent.Key, parent.State, parent.Attempts, req.Attempts, ErrStaleAttempt)
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
				RETURNING `+requestColumns,
				parent.BulkChangeID, SubRequestKey(parent.Key, i), parent.Operation, parent.AccountName, len(part)))
			if err != nil {
				return fmt.Errorf("record sub-request %s: %w", SubRequestKey(parent.Key, i), err)
			}
			if _, err := tx.Exec(ctx, `UPDATE device_changes SET request_pk = $2 WHERE id = ANY($1) AND status = 'SUBMITTING'`,
				part, child.PK); err != nil {
				return fmt.Errorf("move devices to sub-request %s: %w", child.Key, err)
			}
			children = append(children, child)
		}
		return rejectRequest(ctx, tx, parent, code, message)
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
	return scanRows(rows, scanRequest)
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
	return countsBy[int](rows)
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
