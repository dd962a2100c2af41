package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PollRequest is a device change whose confirmation is now sought by
// polling.
type PollRequest struct {
	DeviceChangeID int64
	AccountName    string
	ICCID          string
	Operation      string
	RequestID      string
	WorkflowID     string
	Interval       time.Duration
	MaxInterval    time.Duration
	Attempts       int
	RegisteredAt   time.Time
	// SubmittedAt is when ThingSpace accepted the device change's request.
	SubmittedAt *time.Time
}

// NextWait is how long to wait before checking this device again: the
// interval doubles with every check, up to MaxInterval.
func (p PollRequest) NextWait() time.Duration {
	d := p.Interval
	for i := 0; i < p.Attempts && d < p.MaxInterval; i++ {
		d *= 2
	}
	return min(d, p.MaxInterval)
}

// AddPollRequest registers a device change for polling (idempotent).
func (s *Store) AddPollRequest(ctx context.Context, p PollRequest) error {
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO poll_requests (device_change_id, account_name, iccid, operation, request_id, workflow_id,
			interval_ms, max_interval_ms)
		VALUES ($1, $2, $3, $4, nullif($5, ''), $6, $7, $8)
		ON CONFLICT (device_change_id) DO NOTHING`,
		p.DeviceChangeID, p.AccountName, p.ICCID, p.Operation, p.RequestID, p.WorkflowID,
		p.Interval.Milliseconds(), p.MaxInterval.Milliseconds())
	if err != nil {
		return fmt.Errorf("register poll of device change %d: %w", p.DeviceChangeID, err)
	}
	return nil
}

// RemovePollRequest drops a device change from polling (idempotent).
func (s *Store) RemovePollRequest(ctx context.Context, deviceChangeID int64) error {
	_, err := s.Pool.Exec(ctx, `DELETE FROM poll_requests WHERE device_change_id = $1`, deviceChangeID)
	return err
}

// DuePolls lists an account's device changes due for a status check, oldest
// first, and how many are registered in all.
func (s *Store) DuePolls(ctx context.Context, account string, limit int) (due []PollRequest, total int, err error) {
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM poll_requests WHERE account_name = $1`, account).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.Pool.Query(ctx, `
		SELECT p.device_change_id, p.account_name, p.iccid, p.operation, coalesce(p.request_id, ''), p.workflow_id,
			p.interval_ms, p.max_interval_ms, p.attempts, p.registered_at, dc.submitted_at
		FROM poll_requests p JOIN device_changes dc ON dc.id = p.device_change_id
		WHERE p.account_name = $1 AND p.next_poll_at <= now()
		ORDER BY p.next_poll_at, p.device_change_id LIMIT $2`, account, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("due polls: %w", err)
	}
	due, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (PollRequest, error) {
		var p PollRequest
		var interval, maxInterval int64
		err := r.Scan(&p.DeviceChangeID, &p.AccountName, &p.ICCID, &p.Operation, &p.RequestID, &p.WorkflowID,
			&interval, &maxInterval, &p.Attempts, &p.RegisteredAt, &p.SubmittedAt)
		p.Interval, p.MaxInterval = time.Duration(interval)*time.Millisecond, time.Duration(maxInterval)*time.Millisecond
		return p, err
	})
	return due, total, err
}

// DeferPoll schedules the next check of a device change still pending.
func (s *Store) DeferPoll(ctx context.Context, deviceChangeID int64, after time.Duration, lastState string) error {
	_, err := s.Pool.Exec(ctx, `UPDATE poll_requests SET attempts = attempts + 1, last_state = $3,
		next_poll_at = now() + make_interval(secs => $2) WHERE device_change_id = $1`,
		deviceChangeID, after.Seconds(), lastState)
	return err
}

// PollAccounts lists the accounts with device changes waiting for polling.
func (s *Store) PollAccounts(ctx context.Context) ([]string, error) {
	rows, err := s.Pool.Query(ctx, `SELECT DISTINCT account_name FROM poll_requests ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
