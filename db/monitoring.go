package db

// Queries behind the worker's scrape-time gauges (metrics.StoreCollector):
// what only PostgreSQL knows, read when Prometheus scrapes, so that the
// figures are the same whichever worker answers and survive restarts.

import (
	"context"
	"fmt"
	"time"
)

// MaxMonitoredBulkChanges bounds how many bulk changes in flight get their
// own series: each is a label value, and a backlog of thousands would make
// every scrape heavy. The oldest ones are kept, they are the likeliest to
// be stuck.
const MaxMonitoredBulkChanges = 200

// BulkChangeProgress is one bulk change in flight (RUNNING or PAUSED).
type BulkChangeProgress struct {
	ID     string
	Status string
	// Devices counts its device changes by status (PENDING ... CANCELLED).
	Devices map[string]int
	// LastProgress is the later of its start and the last time one of its
	// device changes was sent or ended.
	LastProgress time.Time
}

// Monitoring is what the store says of the work in progress.
type Monitoring struct {
	// BulkChanges counts the bulk changes not ended, by status.
	BulkChanges map[string]int
	// InFlight are the bulk changes RUNNING or PAUSED, oldest first.
	InFlight []BulkChangeProgress
	// CredentialRefusals counts the ThingSpace credentials latched as
	// refused (until `starter credentials-reset`).
	CredentialRefusals int
}

// Monitoring reads the bulk changes not ended, the progress of those in
// flight and the credential latches.
func (s *Store) Monitoring(ctx context.Context) (Monitoring, error) {
	m := Monitoring{BulkChanges: map[string]int{}}
	rows, err := s.Pool.Query(ctx, `SELECT status, count(*) FROM bulk_changes
		WHERE status NOT IN ('FINISHED', 'FAILED', 'CANCELLED') GROUP BY status`)
	if err != nil {
		return m, fmt.Errorf("count the bulk changes by status: %w", err)
	}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			rows.Close()
			return m, fmt.Errorf("count the bulk changes by status: %w", err)
		}
		m.BulkChanges[status] = n
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("count the bulk changes by status: %w", err)
	}

	rows, err = s.Pool.Query(ctx, `
		WITH flight AS (
			SELECT id, status, coalesce(started_at, created_at) AS started_at FROM bulk_changes
			WHERE status IN ('RUNNING', 'PAUSED') ORDER BY started_at, id LIMIT $1
		)
		SELECT f.id::text, f.status, f.started_at, dc.status, count(*),
			max(greatest(dc.submitted_at, dc.completed_at))
		FROM flight f JOIN device_changes dc ON dc.bulk_change_id = f.id
		GROUP BY f.id, f.status, f.started_at, dc.status
		ORDER BY f.started_at, f.id`, MaxMonitoredBulkChanges)
	if err != nil {
		return m, fmt.Errorf("read the progress of the bulk changes in flight: %w", err)
	}
	for rows.Next() {
		var id, status, dcStatus string
		var started time.Time
		var n int
		var last *time.Time
		if err := rows.Scan(&id, &status, &started, &dcStatus, &n, &last); err != nil {
			rows.Close()
			return m, fmt.Errorf("read the progress of the bulk changes in flight: %w", err)
		}
		if len(m.InFlight) == 0 || m.InFlight[len(m.InFlight)-1].ID != id {
			m.InFlight = append(m.InFlight, BulkChangeProgress{ID: id, Status: status, Devices: map[string]int{},
				LastProgress: started})
		}
		p := &m.InFlight[len(m.InFlight)-1]
		p.Devices[dcStatus] = n
		if last != nil && last.After(p.LastProgress) {
			p.LastProgress = *last
		}
	}
	if err := rows.Err(); err != nil {
		return m, fmt.Errorf("read the progress of the bulk changes in flight: %w", err)
	}

	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM thingspace_credential_latches`).
		Scan(&m.CredentialRefusals); err != nil {
		return m, fmt.Errorf("count the credential latches: %w", err)
	}
	return m, nil
}

// RateBudgetUse is one account's use of one rate-limit bucket.
type RateBudgetUse struct {
	Used      int
	Throttled bool
}

// RateBudgets reads, for one bucket of the rate-limit ledger, the requests
// each account was granted over the last window and whether a 429 holds it
// back now. The accounts named are always in the answer, with zero use when
// the ledger has nothing of theirs.
func (s *Store) RateBudgets(
	ctx context.Context,
	bucket string,
	window time.Duration,
	accounts []string,
) (map[string]RateBudgetUse, error) {
	out := map[string]RateBudgetUse{}
	for _, a := range accounts {
		out[a] = RateBudgetUse{}
	}
	rows, err := s.Pool.Query(ctx, `
		SELECT account_name, sum(used)::int, bool_or(throttled) FROM (
			SELECT account_name, count(*) AS used, false AS throttled FROM rate_limit_events
			WHERE bucket = $1 AND at > clock_timestamp() - make_interval(secs => $2) GROUP BY account_name
			UNION ALL
			SELECT account_name, 0, coalesce(throttled_until > clock_timestamp(), false) FROM rate_limit_buckets
			WHERE bucket = $1
		) u GROUP BY account_name`, bucket, window.Seconds())
	if err != nil {
		return nil, fmt.Errorf("read the rate-limit budget of bucket %s: %w", bucket, err)
	}
	defer rows.Close()
	for rows.Next() {
		var account string
		var u RateBudgetUse
		if err := rows.Scan(&account, &u.Used, &u.Throttled); err != nil {
			return nil, fmt.Errorf("read the rate-limit budget of bucket %s: %w", bucket, err)
		}
		out[account] = u
	}
	return out, rows.Err()
}
