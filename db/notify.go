package db

// Deliveries of notifications (package notify) are audit log entries of
// service "notify", one per attempt at one channel. A delivered one carries
// the dedupe key of its event and channel, so that a retried activity finds
// which channels already took the event; a failed one carries none (there
// may be many).

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// NotifyService is the audit log's service of notification deliveries.
const NotifyService = "notify"

// NotificationKey is the dedupe key of an event's delivery to a channel.
func NotificationKey(eventID, channel string) string {
	return "notify:" + eventID + ":" + channel
}

// NotificationDelivered reports whether the delivery of key is recorded as
// done.
func (s *Store) NotificationDelivered(ctx context.Context, key string) (bool, error) {
	var one int
	err := s.Pool.QueryRow(ctx, `SELECT 1 FROM m2m_log WHERE dedupe_key = $1`, key).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up notification delivery: %w", err)
	}
	return true, nil
}

// RecordNotification writes the audit entry of one delivery attempt (its
// Service is set to NotifyService). key is the NotificationKey of a
// delivered one, "" for a failed one. A delivery recorded already under key
// (an attempt that overlapped) is left as it is: recorded reports whether
// this entry was written.
func (s *Store) RecordNotification(ctx context.Context, e AuditEntry, key string) (recorded bool, err error) {
	var bulk, dedupe, at any
	if !e.At.IsZero() {
		at = e.At
	}
	if e.BulkChangeID != "" {
		bulk = e.BulkChangeID
	}
	if key != "" {
		dedupe = key
	}
	tag, err := s.Pool.Exec(ctx, `
		INSERT INTO m2m_log (logged_at, bulk_change_id, service, operation, method, path, request_body, response_body,
			http_status, outcome, error_message, request_id, attempt, duration_ms, dedupe_key)
		VALUES (coalesce($1::timestamptz, now()), $2, $3, $4, nullif($5, ''), nullif($6, ''), nullif($7, ''), nullif($8, ''),
			nullif($9, 0), $10, nullif($11, ''), nullif($12, ''), nullif($13, 0), $14, $15)
		ON CONFLICT (dedupe_key) DO NOTHING`,
		at, bulk, NotifyService, e.Operation, e.Method, e.Path, e.RequestBody, e.ResponseBody,
		e.HTTPStatus, e.Outcome, e.ErrorMessage, e.RequestID, e.Attempt, e.Duration.Milliseconds(), dedupe)
	if err != nil {
		return false, fmt.Errorf("record notification delivery: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
