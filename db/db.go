// Package db is the product's PostgreSQL store: the schema (embedded
// migrations, applied by one explicit step: Migrate, `worker migrate`) and
// every query, all parameterised.
package db

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store wraps the connection pool; its methods are the product's queries.
type Store struct {
	Pool *pgxpool.Pool
}

// UnreachableError says PostgreSQL could not be reached at all, as opposed
// to a query failing: callers turn it into advice instead of a stack trace.
type UnreachableError struct {
	Addr string
	Err  error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("PostgreSQL is not reachable at %s: %v", e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Open connects to PostgreSQL, checks the connection, and checks that the
// schema is the one this build was made for (SchemaError otherwise): it
// never migrates, so an operator's CLI or a restarted worker cannot change
// the schema under running workers. maxConns 0 keeps pgx's default.
func Open(ctx context.Context, url string, maxConns int32) (*Store, error) {
	s, err := connect(ctx, url, maxConns)
	if err != nil {
		return nil, err
	}
	if err := s.CheckSchema(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies the embedded migrations the database does not have yet:
// the one explicit step of a deploy (`worker migrate`, the compose job
// "migrate"). tern holds an advisory lock while it migrates, so two
// migrations started at once apply each step once.
func Migrate(ctx context.Context, url string) error {
	s, err := connect(ctx, url, 2)
	if err != nil {
		return err
	}
	defer s.Close()
	return s.migrate(ctx)
}

func connect(ctx context.Context, url string, maxConns int32) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database.url is not a valid PostgreSQL URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		addr := net.JoinHostPort(cfg.ConnConfig.Host, fmt.Sprint(cfg.ConnConfig.Port))
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", addr, err)
		}
		return nil, &UnreachableError{Addr: addr, Err: err}
	}
	return &Store{Pool: pool}, nil
}

// Close releases the pool.
func (s *Store) Close() { s.Pool.Close() }

// migrationLockTimeout bounds how long one migration step waits for a lock
// that running workers hold: a step that would otherwise queue behind them
// blocks every later query on the table, so it fails and is run again.
const migrationLockTimeout = "5s"

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET lock_timeout = '"+migrationLockTimeout+"'"); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	m, err := migrate.NewMigrator(ctx, conn.Conn(), "schema_version")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(sub); err != nil {
		return fmt.Errorf("migrate: load: %w", err)
	}
	if have, err := m.GetCurrentVersion(ctx); err == nil && int(have) > len(m.Migrations) {
		return &SchemaError{Have: int(have), Want: len(m.Migrations)}
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// SchemaError says the database's schema is not the one this build was
// made for: older (migrate first) or newer (an older binary).
type SchemaError struct {
	Have, Want int
}

func (e *SchemaError) Error() string {
	if e.Have < e.Want {
		return fmt.Sprintf("the database schema is at version %d and this build needs %d: "+
			"apply the migrations first (`worker migrate`)", e.Have, e.Want)
	}
	return fmt.Sprintf("the database schema is at version %d, newer than this build knows (%d): "+
		"this binary is older than the schema; run the build that migrated it (`--version` tells builds apart)",
		e.Have, e.Want)
}

// SchemaVersion is the number of migrations this build holds: the schema
// version it needs.
func SchemaVersion() int {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		panic(err) // embedded at build time
	}
	return len(entries)
}

// CheckSchema compares the database's schema version with this build's.
func (s *Store) CheckSchema(ctx context.Context) error {
	var have int
	err := s.Pool.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&have)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table: never migrated
		have = 0
	case errors.Is(err, pgx.ErrNoRows):
		have = 0
	case err != nil:
		return fmt.Errorf("read the schema version: %w", err)
	}
	if want := SchemaVersion(); have != want {
		return &SchemaError{Have: have, Want: want}
	}
	return nil
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, s.Pool, fn)
}

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// scanRows reads every row with scan and closes rows: nil when there is
// none, as a slice appended to from nil would be.
func scanRows[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	return pgx.AppendRows([]T(nil), rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
}

// scanned is the result of scanning one row into v: ErrNotFound when the
// query found no row.
func scanned[T any](v *T, err error) (*T, error) {
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	return v, err
}

// countsBy reads the rows of a "SELECT key, count(*) ... GROUP BY 1" query
// into a map and closes rows.
func countsBy[K comparable](rows pgx.Rows) (map[K]int, error) {
	out := map[K]int{}
	var key K
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&key, &n}, func() error {
		out[key] = n
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// value turns a scanner of pointers into one of values.
func value[T any](scan func(pgx.Row) (*T, error)) func(pgx.Row) (T, error) {
	return func(r pgx.Row) (T, error) {
		p, err := scan(r)
		if err != nil {
			var zero T
			return zero, err
		}
		return *p, nil
	}
}
