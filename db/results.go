package db

// What the device changes of a bulk change add up to: its results file,
// its counts by status, and where it stands for a run that takes it over.

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/change"
)

// ResultRow is one line of a bulk change's results.
type ResultRow struct {
	Seq           int
	ICCID         string
	Operation     change.Operation
	Status        change.Status
	Outcome       string
	FinalState    string
	MSISDN        string
	RequestID     string
	ErrorCode     change.Code
	ErrorMessage  string
	BillingStatus change.BillingStatus
	BillingError  string
	ConfirmedBy   string
	// RemovedFromThingSpace: the deactivation removed the device from
	// ThingSpace's inventory (deleteAfterDeactivation).
	RemovedFromThingSpace bool
}

// Results lists every device change of a bulk change in file order.
func (s *Store) Results(ctx context.Context, bulkID string) ([]ResultRow, error) {
	rows, err := s.Pool.Query(ctx, `
		SELECT seq, iccid, operation, status, coalesce(outcome, ''), coalesce(final_state, ''), coalesce(msisdn, ''),
			coalesce(request_id, ''), coalesce(error_code, ''), coalesce(error_message, ''), billing_status, coalesce(billing_error, ''),
			coalesce(confirmed_by, ''), removed_from_thingspace
		FROM device_changes WHERE bulk_change_id = $1 ORDER BY seq`, bulkID)
	if err != nil {
		return nil, fmt.Errorf("results: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ResultRow, error) {
		var x ResultRow
		err := r.Scan(&x.Seq, &x.ICCID, &x.Operation, &x.Status, &x.Outcome, &x.FinalState, &x.MSISDN,
			&x.RequestID, &x.ErrorCode, &x.ErrorMessage, &x.BillingStatus, &x.BillingError, &x.ConfirmedBy,
			&x.RemovedFromThingSpace)
		return x, err
	})
}

// StatusCounts counts device changes by status, and errors by code.
type StatusCounts struct {
	ByStatus      map[change.Status]int
	ErrorsByCode  map[change.Code]int
	BillingErrors int
	// BillingPending counts Rev.io steps owed and not ended.
	BillingPending int
}

// CountStatuses summarises a bulk change from the database.
func (s *Store) CountStatuses(ctx context.Context, bulkID string) (StatusCounts, error) {
	out := StatusCounts{ByStatus: map[change.Status]int{}, ErrorsByCode: map[change.Code]int{}}
	rows, err := s.Pool.Query(
		ctx,
		`SELECT status, coalesce(error_code, ''), billing_status, count(*) FROM device_changes
		WHERE bulk_change_id = $1 GROUP BY 1, 2, 3`,
		bulkID,
	)
	if err != nil {
		return out, err
	}
	var status change.Status
	var code change.Code
	var billing change.BillingStatus
	var n int
	_, err = pgx.ForEachRow(rows, []any{&status, &code, &billing, &n}, func() error {
		out.ByStatus[status] += n
		if status == change.Failed {
			out.ErrorsByCode[code] += n
		}
		switch billing {
		case change.BillingError:
			out.BillingErrors += n
		case change.BillingPending:
			out.BillingPending += n
		}
		return nil
	})
	return out, err
}

// RecoveryCounts describe where a bulk change stands, read from its device
// changes, for a parent run that takes it over.
type RecoveryCounts struct {
	// NextBatch is the first batch with a device change not yet sent
	// (pending, or sending); Batches+1 when every batch was sent.
	NextBatch int
	// Sent, Unfinished: device changes of the batches before NextBatch,
	// and those of them without an outcome.
	Sent       int
	Unfinished int
	change.Tally
}

// RecoveryState reads where a bulk change of the given number of batches
// stands.
func (s *Store) RecoveryState(ctx context.Context, bulkID string, batches int) (*RecoveryCounts, error) {
	return s.RecoveryStateOf(ctx, bulkID, 1, batches)
}

// RecoveryStateOf is RecoveryState of the batches first to last (a shard's):
// NextBatch is the first of them with a device change not yet sent (last+1
// when all were), the counts those of the batches before it in the range.
func (s *Store) RecoveryStateOf(ctx context.Context, bulkID string, first, last int) (*RecoveryCounts, error) {
	out := &RecoveryCounts{Tally: change.NewTally()}
	err := s.Pool.QueryRow(ctx, `SELECT coalesce(min(batch_no), $3 + 1) FROM device_changes
		WHERE bulk_change_id = $1 AND batch_no BETWEEN $2 AND $3 AND status IN ('PENDING', 'SUBMITTING')`,
		bulkID, first, last).Scan(&out.NextBatch)
	if err != nil {
		return nil, fmt.Errorf("recovery state of %s: %w", bulkID, err)
	}
	rows, err := s.Pool.Query(
		ctx,
		`SELECT status, coalesce(outcome, ''), coalesce(error_code, ''), count(*) FROM device_changes
		WHERE bulk_change_id = $1 AND batch_no >= $2 AND batch_no < $3 AND status <> 'CANCELLED' GROUP BY 1, 2, 3`,
		bulkID,
		first,
		out.NextBatch,
	)
	if err != nil {
		return nil, fmt.Errorf("recovery counts of %s: %w", bulkID, err)
	}
	var status change.Status
	var outcome change.Outcome
	var code change.Code
	var n int
	_, err = pgx.ForEachRow(rows, []any{&status, &outcome, &code, &n}, func() error {
		out.Sent += n
		switch status {
		case change.Processed:
			out.AddProcessed(outcome, n)
		case change.Failed:
			out.AddError(code, n)
		default:
			out.Unfinished += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recovery counts of %s: %w", bulkID, err)
	}
	return out, nil
}

// BatchSize is the number of device changes of one batch.
type BatchSize struct {
	BatchNo int
	Devices int
}

// BatchSizes lists a bulk change's batches in order with their device
// changes: what its shards are cut from.
func (s *Store) BatchSizes(ctx context.Context, bulkID string) ([]BatchSize, error) {
	rows, err := s.Pool.Query(ctx, `SELECT batch_no, count(*) FROM device_changes
		WHERE bulk_change_id = $1 GROUP BY batch_no ORDER BY batch_no`, bulkID)
	if err != nil {
		return nil, fmt.Errorf("batch sizes of %s: %w", bulkID, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (BatchSize, error) {
		var b BatchSize
		err := r.Scan(&b.BatchNo, &b.Devices)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("batch sizes of %s: %w", bulkID, err)
	}
	return out, nil
}
