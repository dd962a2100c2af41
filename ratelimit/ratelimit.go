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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/iot-ops/tsbulk/db"
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
	err := l.ledger().InRateLedger(ctx, account, func(tx *db.RateLedgerTx) error {
		buckets := make([]db.RateBucket, len(rules))
		for i, r := range rules { // rules are sorted: locks are taken in one order
			var err error
			if buckets[i], err = tx.LockBucket(ctx, r.Bucket); err != nil {
				return err
			}
		}
		// The time is read once the locks are held: a request is recorded at
		// the moment it is granted, never earlier.
		now, err := tx.Now(ctx)
		if err != nil {
			return err
		}
		guard := l.Guard
		if guard <= 0 {
			guard = time.Second
		}
		for i, r := range rules {
			b := buckets[i]
			window := r.Window + guard
			if b.ThrottledUntil != nil && b.ThrottledUntil.After(now) {
				wait = max(wait, b.ThrottledUntil.Sub(now))
			}
			if b.PacedUntil != nil && b.PacedUntil.After(now) && b.LastAt != nil {
				if next := b.LastAt.Add(l.spacing(r)); next.After(now) {
					wait = max(wait, next.Sub(now))
				}
			}
			used, err := tx.CountSince(ctx, r.Bucket, now.Add(-window))
			if err != nil {
				return err
			}
			if used >= r.Limit {
				// The slot frees when the (used-limit+1)-th oldest request
				// of the window leaves it.
				oldest, err := tx.GrantedSince(ctx, r.Bucket, now.Add(-window), used-r.Limit)
				if err != nil {
					return err
				}
				wait = max(wait, oldest.Add(window).Sub(now)+time.Millisecond)
			}
		}
		if wait > 0 {
			return nil
		}
		for _, r := range rules {
			if err := tx.Grant(ctx, r.Bucket, op, now, now.Add(-r.Window-time.Minute)); err != nil {
				return err
			}
		}
		return nil
	})
	return wait, err
}

// ledger is the store holding the rate-limit ledger.
func (l *Limiter) ledger() *db.Store { return &db.Store{Pool: l.Pool} }

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
		_ = l.ledger().ThrottleBucket(context.WithoutCancel(ctx), account, r.Bucket, retryAfter, r.Window)
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
		use, err := l.ledger().RateBucketInUse(ctx, account, r.Bucket, r.Window)
		if err != nil {
			return nil, err
		}
		out = append(out, Status{
			Bucket:         r.Bucket,
			Limit:          r.Limit,
			Window:         r.Window,
			Used:           use.Used,
			ThrottledUntil: use.ThrottledUntil,
			PacedUntil:     use.PacedUntil,
		})
	}
	return out, nil
}
