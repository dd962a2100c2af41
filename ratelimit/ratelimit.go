// Package ratelimit keeps every worker process within a ThingSpace
// account's request limits, using PostgreSQL as the shared ledger.
//
// Why PostgreSQL and not a Temporal task-queue rate limit: the limits are
// on HTTP requests to ThingSpace, and one activity makes a variable number
// of them (authentication, list pages, transport retries); a task-queue
// limit counts activity dispatches, retries included, is per task queue
// rather than per account, is rough at rates below one a second, and cannot
// tell how much of the budget is used. Here every request is recorded, in a
// transaction holding the account's row lock, before it goes out and only
// if its rolling window still has room, so the limit holds exactly across
// any number of workers and the budget in use can be reported. The clock
// is the database's, so workers' clocks do not matter.
package ratelimit

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-ops/tsbulk/thingspace"
)

// Rule is one limit: at most Limit requests in any rolling Window, counted
// over the operations in Ops (nil: every request).
type Rule struct {
	Bucket string
	Limit  int
	Window time.Duration
	Ops    []string
}

func (r Rule) applies(op string) bool {
	if len(r.Ops) == 0 {
		return true
	}
	for _, o := range r.Ops {
		if o == op {
			return true
		}
	}
	return false
}

// Rules builds the rules of ThingSpace's limits: every request counts
// against requestsPerWindow, and activations also against
// activatesPerMinute. A limit of 0 is not enforced.
func Rules(requestsPerWindow int, window time.Duration, activatesPerMinute int) []Rule {
	var rules []Rule
	if requestsPerWindow > 0 {
		rules = append(rules, Rule{Bucket: "requests", Limit: requestsPerWindow, Window: window})
	}
	if activatesPerMinute > 0 {
		rules = append(
			rules,
			Rule{Bucket: "activate", Limit: activatesPerMinute, Window: time.Minute, Ops: []string{"activate"}},
		)
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].Bucket < rules[j].Bucket })
	return rules
}

// Limiter implements thingspace.Limiter for one process; every process
// using the same database shares the budget.
type Limiter struct {
	Pool  *pgxpool.Pool
	Rules []Rule
	// DefaultAccount is charged when the context names no account.
	DefaultAccount string
	// MaxWait: a request that would wait longer is refused with a
	// rate-limited error carrying the wait, so the activity is retried
	// later instead of holding a worker slot (default 20s).
	MaxWait time.Duration
	// PaceFactor: after a 429, requests are spaced evenly at this fraction
	// of the limit for one window (default 0.9).
	PaceFactor float64
	// Guard lengthens every window by this much (default 1s): a request is
	// granted here a little before ThingSpace receives it, and uneven
	// network delays must not squeeze one request too many into
	// ThingSpace's window.
	Guard time.Duration
}

var _ thingspace.Limiter = (*Limiter)(nil)

type accountKey struct{}

// WithAccount names the ThingSpace account the requests made with ctx are
// charged to.
func WithAccount(ctx context.Context, account string) context.Context {
	return context.WithValue(ctx, accountKey{}, account)
}

// AccountOf returns the account named by WithAccount, or "".
func AccountOf(ctx context.Context) string {
	a, _ := ctx.Value(accountKey{}).(string)
	return a
}

func (l *Limiter) account(ctx context.Context) string {
	if a := AccountOf(ctx); a != "" {
		return a
	}
	return l.DefaultAccount
}

func (l *Limiter) rules(op string) []Rule {
	var out []Rule
	for _, r := range l.Rules {
		if r.applies(op) {
			out = append(out, r)
		}
	}
	return out
}

// Wait returns when the request may go, recording it against the budget.
func (l *Limiter) Wait(ctx context.Context, op string) error {
	rules := l.rules(op)
	if len(rules) == 0 {
		return nil
	}
	maxWait := l.MaxWait
	if maxWait <= 0 {
		maxWait = 20 * time.Second
	}
	account := l.account(ctx)
	for {
		wait, err := l.acquire(ctx, account, op, rules)
		if err != nil {
			return fmt.Errorf("rate limit of %s: %w", account, err)
		}
		if wait <= 0 {
			return nil
		}
		if wait > maxWait {
			return &thingspace.Error{Op: op, Kind: thingspace.KindRateLimited, RetryAfter: wait,
				Message: fmt.Sprintf(
					"account %s is at its ThingSpace request limit; next slot in %s",
					account,
					wait.Round(time.Second),
				)}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// acquire records one request if every rule has room, or returns how long
// to wait for one.
func (l *Limiter) acquire(ctx context.Context, account, op string, rules []Rule) (time.Duration, error) {
	var wait time.Duration
	err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
		type bucketState struct{ throttled, paced, last *time.Time }
		states := make([]bucketState, len(rules))
		for i, r := range rules { // rules are sorted: locks are taken in one order
			if _, err := tx.Exec(ctx, `INSERT INTO rate_limit_buckets (account_name, bucket) VALUES ($1, $2)
				ON CONFLICT DO NOTHING`, account, r.Bucket); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT throttled_until, paced_until, last_at FROM rate_limit_buckets
				WHERE account_name = $1 AND bucket = $2 FOR UPDATE`, account, r.Bucket).Scan(
				&states[i].throttled, &states[i].paced, &states[i].last); err != nil {
				return err
			}
		}
		// The time is read once the locks are held: a request is recorded at
		// the moment it is granted, never earlier.
		var now time.Time
		if err := tx.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
			return err
		}
		guard := l.Guard
		if guard <= 0 {
			guard = time.Second
		}
		for i, r := range rules {
			throttled, paced, last := states[i].throttled, states[i].paced, states[i].last
			window := r.Window + guard
			if throttled != nil && throttled.After(now) {
				wait = max(wait, throttled.Sub(now))
			}
			if paced != nil && paced.After(now) && last != nil {
				if next := last.Add(l.spacing(r)); next.After(now) {
					wait = max(wait, next.Sub(now))
				}
			}
			var used int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM rate_limit_events WHERE account_name = $1 AND bucket = $2
				AND at > $3`, account, r.Bucket, now.Add(-window)).Scan(&used); err != nil {
				return err
			}
			if used >= r.Limit {
				// The slot frees when the (used-limit+1)-th oldest request
				// of the window leaves it.
				var oldest time.Time
				if err := tx.QueryRow(ctx, `SELECT at FROM rate_limit_events WHERE account_name = $1 AND bucket = $2
					AND at > $3 ORDER BY at OFFSET $4 LIMIT 1`, account, r.Bucket, now.Add(-window), used-r.Limit).Scan(&oldest); err != nil {
					return err
				}
				wait = max(wait, oldest.Add(window).Sub(now)+time.Millisecond)
			}
		}
		if wait > 0 {
			return nil
		}
		for _, r := range rules {
			if _, err := tx.Exec(ctx, `INSERT INTO rate_limit_events (account_name, bucket, at, op) VALUES ($1, $2, $3, $4)`,
				account, r.Bucket, now, op); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE rate_limit_buckets SET last_at = $3 WHERE account_name = $1 AND bucket = $2`,
				account, r.Bucket, now); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `DELETE FROM rate_limit_events WHERE account_name = $1 AND bucket = $2 AND at < $3`,
				account, r.Bucket, now.Add(-r.Window-time.Minute)); err != nil {
				return err
			}
		}
		return nil
	})
	return wait, err
}

func (l *Limiter) spacing(r Rule) time.Duration {
	f := l.PaceFactor
	if f <= 0 || f > 1 {
		f = 0.9
	}
	return time.Duration(float64(r.Window) / (float64(r.Limit) * f))
}

// Throttled records a 429 from ThingSpace: the account sends nothing more
// until Retry-After has passed, then paces its requests below the limit
// for one window instead of retrying in a burst.
func (l *Limiter) Throttled(ctx context.Context, op string, retryAfter time.Duration) {
	if retryAfter <= 0 {
		retryAfter = time.Second
	}
	account := l.account(ctx)
	for _, r := range l.rules(op) {
		_, _ = l.Pool.Exec(context.WithoutCancel(ctx), `
			INSERT INTO rate_limit_buckets (account_name, bucket, throttled_until, paced_until)
			VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), clock_timestamp() + make_interval(secs => $3 + $4))
			ON CONFLICT (account_name, bucket) DO UPDATE SET
				throttled_until = greatest(rate_limit_buckets.throttled_until, EXCLUDED.throttled_until),
				paced_until = greatest(rate_limit_buckets.paced_until, EXCLUDED.paced_until)`,
			account, r.Bucket, retryAfter.Seconds(), r.Window.Seconds())
	}
}

// Status is the budget of one rule as it stands.
type Status struct {
	Bucket         string
	Limit          int
	Window         time.Duration
	Used           int
	ThrottledUntil *time.Time
	PacedUntil     *time.Time
}

// Status reports the account's budget.
func (l *Limiter) Status(ctx context.Context, account string) ([]Status, error) {
	if account == "" {
		account = l.DefaultAccount
	}
	out := make([]Status, 0, len(l.Rules))
	for _, r := range l.Rules {
		s := Status{Bucket: r.Bucket, Limit: r.Limit, Window: r.Window}
		err := l.Pool.QueryRow(ctx, `
			SELECT (SELECT count(*) FROM rate_limit_events WHERE account_name = $1 AND bucket = $2 AND at > clock_timestamp() - make_interval(secs => $3)),
				(SELECT throttled_until FROM rate_limit_buckets WHERE account_name = $1 AND bucket = $2 AND throttled_until > clock_timestamp()),
				(SELECT paced_until FROM rate_limit_buckets WHERE account_name = $1 AND bucket = $2 AND paced_until > clock_timestamp())`,
			account, r.Bucket, r.Window.Seconds()).Scan(&s.Used, &s.ThrottledUntil, &s.PacedUntil)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
