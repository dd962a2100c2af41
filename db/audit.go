package db

import (
	"context"
	"fmt"
	"time"
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
