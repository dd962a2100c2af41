package db

// The rate-limit ledger (tables rate_limit_buckets and rate_limit_events):
// the queries of package ratelimit, which decides from them when a request
// to ThingSpace may go.

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// RateBucket is the state of one limit's bucket of an account.
type RateBucket struct {
	ThrottledUntil *time.Time // nothing goes out before (after a 429)
	PacedUntil     *time.Time // requests are spaced out until then
	LastAt         *time.Time // the last request granted
}

// RateLedgerTx is a transaction on one account's rate-limit ledger.
type RateLedgerTx struct {
	tx      pgx.Tx
	account string
}

// InRateLedger runs fn in one transaction on the account's ledger,
// committing when it returns nil.
func (s *Store) InRateLedger(ctx context.Context, account string, fn func(*RateLedgerTx) error) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		return fn(&RateLedgerTx{tx: tx, account: account})
	})
}

// LockBucket reads the bucket (created empty if new), holding its row lock
// until the transaction ends.
func (t *RateLedgerTx) LockBucket(ctx context.Context, bucket string) (RateBucket, error) {
	var b RateBucket
	if _, err := t.tx.Exec(ctx, `INSERT INTO rate_limit_buckets (account_name, bucket) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`, t.account, bucket); err != nil {
		return b, err
	}
	err := t.tx.QueryRow(ctx, `SELECT throttled_until, paced_until, last_at FROM rate_limit_buckets
		WHERE account_name = $1 AND bucket = $2 FOR UPDATE`, t.account, bucket).Scan(
		&b.ThrottledUntil, &b.PacedUntil, &b.LastAt)
	return b, err
}

// Now is the database's clock: the ledger's only clock.
func (t *RateLedgerTx) Now(ctx context.Context) (time.Time, error) {
	var now time.Time
	err := t.tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now)
	return now, err
}

// CountSince counts the bucket's requests granted after since.
func (t *RateLedgerTx) CountSince(ctx context.Context, bucket string, since time.Time) (int, error) {
	var used int
	err := t.tx.QueryRow(ctx, `SELECT count(*) FROM rate_limit_events WHERE account_name = $1 AND bucket = $2
		AND at > $3`, t.account, bucket, since).Scan(&used)
	return used, err
}

// GrantedSince is when the bucket's request number n (from 0, oldest
// first) among those granted after since was granted.
func (t *RateLedgerTx) GrantedSince(ctx context.Context, bucket string, since time.Time, n int) (time.Time, error) {
	var at time.Time
	err := t.tx.QueryRow(ctx, `SELECT at FROM rate_limit_events WHERE account_name = $1 AND bucket = $2
		AND at > $3 ORDER BY at OFFSET $4 LIMIT 1`, t.account, bucket, since, n).Scan(&at)
	return at, err
}

// Grant records a request of op granted at at in the bucket, and forgets
// the bucket's requests older than forgetBefore.
func (t *RateLedgerTx) Grant(ctx context.Context, bucket, op string, at, forgetBefore time.Time) error {
	if _, err := t.tx.Exec(ctx, `INSERT INTO rate_limit_events (account_name, bucket, at, op) VALUES ($1, $2, $3, $4)`,
		t.account, bucket, at, op); err != nil {
		return err
	}
	if _, err := t.tx.Exec(ctx, `UPDATE rate_limit_buckets SET last_at = $3 WHERE account_name = $1 AND bucket = $2`,
		t.account, bucket, at); err != nil {
		return err
	}
	_, err := t.tx.Exec(ctx, `DELETE FROM rate_limit_events WHERE account_name = $1 AND bucket = $2 AND at < $3`,
		t.account, bucket, forgetBefore)
	return err
}

// ThrottleBucket records a 429: the bucket sends nothing for retryAfter,
// then paces its requests for one more window.
func (s *Store) ThrottleBucket(ctx context.Context, account, bucket string, retryAfter, window time.Duration) error {
	_, err := s.Pool.Exec(ctx, `
		INSERT INTO rate_limit_buckets (account_name, bucket, throttled_until, paced_until)
		VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), clock_timestamp() + make_interval(secs => $3 + $4))
		ON CONFLICT (account_name, bucket) DO UPDATE SET
			throttled_until = greatest(rate_limit_buckets.throttled_until, EXCLUDED.throttled_until),
			paced_until = greatest(rate_limit_buckets.paced_until, EXCLUDED.paced_until)`,
		account, bucket, retryAfter.Seconds(), window.Seconds())
	return err
}

// RateBucketUse is a bucket's budget in use: the requests granted in the
// last window, and its throttle and pacing when they are still on.
type RateBucketUse struct {
	Used           int
	ThrottledUntil *time.Time
	PacedUntil     *time.Time
}

// RateBucketInUse reads the bucket's budget in use over the last window.
func (s *Store) RateBucketInUse(
	ctx context.Context,
	account, bucket string,
	window time.Duration,
) (RateBucketUse, error) {
	var u RateBucketUse
	err := s.Pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM rate_limit_events WHERE account_name = $1 AND bucket = $2 AND at > clock_timestamp() - make_interval(secs => $3)),
			(SELECT throttled_until FROM rate_limit_buckets WHERE account_name = $1 AND bucket = $2 AND throttled_until > clock_timestamp()),
			(SELECT paced_until FROM rate_limit_buckets WHERE account_name = $1 AND bucket = $2 AND paced_until > clock_timestamp())`,
		account, bucket, window.Seconds()).Scan(&u.Used, &u.ThrottledUntil, &u.PacedUntil)
	return u, err
}
