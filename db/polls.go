package db

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iot-ops/tsbulk/change"
)

// NewPollRequest registers a device change whose confirmation is now sought
// by polling.
type NewPollRequest struct {
	DeviceChangeID int64
	AccountName    string
	ICCID          string
	Operation      change.Awaited
	RequestID      string
	WorkflowID     string
	Interval       time.Duration
	MaxInterval    time.Duration
}

// PollRequest is a registered device change whose confirmation is sought
// by polling.
type PollRequest struct {
	NewPollRequest
	Attempts     int
	RegisteredAt time.Time
	// SentAt is when the device change was sent: ThingSpace accepted the
	// request that carried it (column submitted_at).
	SentAt *time.Time
	// DeleteAfterDeactivation: the change's deactivation request asked
	// ThingSpace to remove the device once deactivated, so its absence
	// from the device list confirms the change.
	DeleteAfterDeactivation bool
	// NextPollAt is when the device change became (or becomes) due.
	NextPollAt time.Time
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
func (s *Store) AddPollRequest(ctx context.Context, p NewPollRequest) error {
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
// first (at most limit), and how many are registered in all.
func (s *Store) DuePolls(ctx context.Context, account string, limit int) (due []PollRequest, total int, err error) {
	err = s.Pool.QueryRow(ctx, `SELECT count(*) FROM poll_requests WHERE account_name = $1`, account).Scan(&total)
	if err != nil {
		return nil, 0, err
	}
	rows, err := s.Pool.Query(ctx, `
		SELECT p.device_change_id, p.account_name, p.iccid, p.operation, coalesce(p.request_id, ''), p.workflow_id,
			p.interval_ms, p.max_interval_ms, p.attempts, p.registered_at, dc.submitted_at, p.next_poll_at,
			coalesce(dc.delete_after_deactivation, false)
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
			&interval, &maxInterval, &p.Attempts, &p.RegisteredAt, &p.SentAt, &p.NextPollAt,
			&p.DeleteAfterDeactivation)
		p.Interval, p.MaxInterval = time.Duration(
			interval,
		)*time.Millisecond, time.Duration(
			maxInterval,
		)*time.Millisecond
		return p, err
	})
	return due, total, err
}

// DeferPoll schedules the next check of a device change still pending.
func (s *Store) DeferPoll(ctx context.Context, deviceChangeID int64, after time.Duration, lastState change.State) error {
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

// PollCursor is where an account's poller stands in ThingSpace's device
// list (poll_cursors), and what the current polling cycle has spent.
type PollCursor struct {
	AccountName string
	// Cursor is the paging position of the next page (JSON, opaque here);
	// nil: the start of the list.
	Cursor json.RawMessage
	// LapStartedAt is when the current pass over the list read its first
	// page (nil before any).
	LapStartedAt *time.Time
	// CycleKey names the polling cycle that last used the row;
	// CycleRequests counts the ThingSpace requests it made.
	CycleKey      string
	CycleRequests int
}

// BeginPollCycle returns the account's poll cursor, creating it at the start
// of the list. A cycle key other than the stored one starts a new cycle,
// whose request count starts at 0; the same key (a retry of the cycle)
// keeps counting where the failed attempt stopped.
func (s *Store) BeginPollCycle(ctx context.Context, account, cycleKey string) (*PollCursor, error) {
	c := PollCursor{AccountName: account}
	err := s.Pool.QueryRow(ctx, `
		INSERT INTO poll_cursors (account_name, cycle_key) VALUES ($1, $2)
		ON CONFLICT (account_name) DO UPDATE SET
			cycle_requests = CASE WHEN poll_cursors.cycle_key = EXCLUDED.cycle_key THEN poll_cursors.cycle_requests ELSE 0 END,
			cycle_key = EXCLUDED.cycle_key, updated_at = now()
		RETURNING cursor, lap_started_at, cycle_key, cycle_requests`, account, cycleKey).
		Scan(&c.Cursor, &c.LapStartedAt, &c.CycleKey, &c.CycleRequests)
	if err != nil {
		return nil, fmt.Errorf("poll cursor of %s: %w", account, err)
	}
	return &c, nil
}

// PollProgress is what a polling cycle records after each ThingSpace
// request.
type PollProgress struct {
	// Cursor is where the next page starts; nil: the start of the list.
	Cursor json.RawMessage
	// StartLap: the page just read was the first of a pass over the list.
	StartLap bool
	// Requests the cycle has made so far.
	Requests int
}

// SavePollProgress records where the account's poller stands, so that a
// retried or later cycle resumes there.
func (s *Store) SavePollProgress(ctx context.Context, account string, p PollProgress) error {
	var cursor any
	if len(p.Cursor) > 0 {
		cursor = p.Cursor
	}
	_, err := s.Pool.Exec(ctx, `UPDATE poll_cursors SET cursor = $2, cycle_requests = $3,
		lap_started_at = CASE WHEN $4 THEN now() ELSE lap_started_at END, updated_at = now()
		WHERE account_name = $1`, account, cursor, p.Requests, p.StartLap)
	if err != nil {
		return fmt.Errorf("save poll cursor of %s: %w", account, err)
	}
	return nil
}

// SavePollRequests records the requests a polling cycle has made, without
// moving its cursor (one-device lookups).
func (s *Store) SavePollRequests(ctx context.Context, account string, requests int) error {
	_, err := s.Pool.Exec(
		ctx,
		`UPDATE poll_cursors SET cycle_requests = $2, updated_at = now() WHERE account_name = $1`,
		account,
		requests,
	)
	if err != nil {
		return fmt.Errorf("save poll requests of %s: %w", account, err)
	}
	return nil
}
