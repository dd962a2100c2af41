package db

// Queries the benchmark (harness/cmd/bench) needs beside the product's own: every
// SQL statement stays in this package.

import (
	"context"
	"fmt"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// CountUnfinished counts the device changes without an outcome (neither
// PROCESSED nor ERROR), in every bulk change of the database: after a
// benchmark run it must be zero.
func (s *Store) CountUnfinished(ctx context.Context) (int, error) {
	var n int
	err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM device_changes WHERE status NOT IN ('PROCESSED', 'ERROR')`).Scan(&n)
	return n, err
}

// RecordEarlierRequests writes n requests of an account into the rate-limit
// ledger, evenly spread over the last hour, as a run that had been going at
// the limit for an hour would have left them (the benchmark's baseline
// measures a request's time at the limit this way).
func (s *Store) RecordEarlierRequests(ctx context.Context, account string, n int) error {
	if n <= 0 {
		return nil
	}
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO rate_limit_events (account_name, bucket, at, op)
		SELECT $1, 'requests', clock_timestamp() - interval '1 hour' + g * make_interval(secs => 3600.0 / ($2 + 1)), 'bench-earlier-hour'
		FROM generate_series(1, $2) AS g`, account, n)
	return err
}

// BackendPIDs lists the server processes serving connections to the given
// databases (pg_stat_activity), so that their CPU can be read from /proc.
func BackendPIDs(ctx context.Context, pool *pgxpool.Pool, databases []string) ([]int, error) {
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = ANY($1)`, databases)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int])
}

// scratchName: database names are identifiers, which cannot be query
// parameters; only plain names are accepted.
var scratchName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// CreateDatabase creates an empty database on the server of adminURL.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	if !scratchName.MatchString(name) {
		return fmt.Errorf("database name %q: only lower-case letters, digits and _", name)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("PostgreSQL is not reachable: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	return err
}

// DropDatabase drops a database, closing its connections first.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	if !scratchName.MatchString(name) {
		return fmt.Errorf("database name %q: only lower-case letters, digits and _", name)
	}
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	return err
}
