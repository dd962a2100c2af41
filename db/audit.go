package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// AuditEntry is one row of the M2M audit log: one HTTP exchange with
// ThingSpace or Rev.io. Bodies must already be redacted.
type AuditEntry struct {
	BulkChangeID   string
	DeviceChangeID int64
	Service        string // thingspace | revio
	Operation      string
	Method         string
	Path           string
	RequestBody    string
	ResponseBody   string
	HTTPStatus     int
	Outcome        string // ok | error
	ErrorCode      string
	ErrorMessage   string
	RequestID      string
	Attempt        int
	Duration       time.Duration
	At             time.Time
}

// WriteAudit appends an entry to the audit log.
func (s *Store) WriteAudit(ctx context.Context, e AuditEntry) error {
	var bulk any
	if e.BulkChangeID != "" {
		bulk = e.BulkChangeID
	}
	var dc any
	if e.DeviceChangeID != 0 {
		dc = e.DeviceChangeID
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO m2m_log (logged_at, bulk_change_id, device_change_id, service, operation, method, path, request_body,
			response_body, http_status, outcome, error_code, error_message, request_id, attempt, duration_ms)
		VALUES ($1, $2, $3, $4, $5, nullif($6, ''), nullif($7, ''), nullif($8, ''), nullif($9, ''), nullif($10, 0), $11,
			nullif($12, ''), nullif($13, ''), nullif($14, ''), nullif($15, 0), $16)`,
		at, bulk, dc, e.Service, e.Operation, e.Method, e.Path, e.RequestBody, e.ResponseBody, e.HTTPStatus,
		e.Outcome, e.ErrorCode, e.ErrorMessage, e.RequestID, e.Attempt, e.Duration.Milliseconds())
	if err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	return nil
}

// AuditCount counts audit entries of a bulk change by service.
func (s *Store) AuditCount(ctx context.Context, bulkID string) (map[string]int, error) {
	rows, err := s.Pool.Query(ctx, `SELECT service, count(*) FROM m2m_log WHERE bulk_change_id = $1 GROUP BY 1`, bulkID)
	if err != nil {
		return nil, err
	}
	return countsBy[string](rows)
}

// AuditRow is one audit log entry of a bulk change as operators read it:
// what was exchanged with whom and how it ended, without the bodies (which
// may hold a Primary Place of Use, personal data).
type AuditRow struct {
	At             time.Time `json:"at"`
	DeviceChangeID int64     `json:"deviceChangeId,omitempty"`
	Service        string    `json:"service"`
	Operation      string    `json:"operation"`
	Method         string    `json:"method,omitempty"`
	Path           string    `json:"path,omitempty"`
	HTTPStatus     int       `json:"httpStatus,omitempty"`
	Outcome        string    `json:"outcome"`
	ErrorCode      string    `json:"errorCode,omitempty"`
	ErrorMessage   string    `json:"errorMessage,omitempty"`
	RequestID      string    `json:"requestId,omitempty"`
	Attempt        int       `json:"attempt,omitempty"`
	DurationMS     int       `json:"durationMs,omitempty"`
}

// AuditLog is the first limit audit entries of a bulk change, oldest
// first, and how many it has in all. Scoping by tenant goes through the
// bulk change (bulk_changes.tenant): every entry naming it is its
// tenant's.
func (s *Store) AuditLog(ctx context.Context, bulkID string, limit int) ([]AuditRow, int, error) {
	var total int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM m2m_log WHERE bulk_change_id = $1`, bulkID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count audit entries of %s: %w", bulkID, err)
	}
	rows, err := s.Pool.Query(ctx, `
		SELECT logged_at, coalesce(device_change_id, 0), service, operation, coalesce(method, ''), coalesce(path, ''),
			coalesce(http_status, 0), outcome, coalesce(error_code, ''), coalesce(error_message, ''),
			coalesce(request_id, ''), coalesce(attempt, 0), coalesce(duration_ms, 0)
		FROM m2m_log WHERE bulk_change_id = $1 ORDER BY logged_at, id LIMIT $2`, bulkID, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read audit entries of %s: %w", bulkID, err)
	}
	out, err := scanRows(rows, func(r pgx.Row) (AuditRow, error) {
		var a AuditRow
		err := r.Scan(&a.At, &a.DeviceChangeID, &a.Service, &a.Operation, &a.Method, &a.Path, &a.HTTPStatus, &a.Outcome,
			&a.ErrorCode, &a.ErrorMessage, &a.RequestID, &a.Attempt, &a.DurationMS)
		return a, err
	})
	return out, total, err
}
