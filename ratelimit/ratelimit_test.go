package ratelimit

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
	"github.com/iot-ops/tsbulk/thingspace"
)

// process opens its own pool on the database, as a separate worker would.
func process(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	require.NoError(t, db.Migrate(context.Background(), url))
	st, err := db.Open(context.Background(), url, 5)
	require.NoError(t, err)
	t.Cleanup(st.Close)
	return st.Pool
}

// maxInWindow is the highest number of times in any rolling window.
func maxInWindow(times []time.Time, window time.Duration) int {
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	best, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= window {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// TestLimitHoldsAcrossProcesses has two "processes" (separate pools, as two
// workers), each with many goroutines, request as fast as they can for a
// while; the requests granted never exceed the limit in any window, and the
// limit is used.
func TestLimitHoldsAcrossProcesses(t *testing.T) {
	url := dbtest.NewURL(t)
	rules := Rules(10, time.Second, 0)
	guard := 50 * time.Millisecond
	limiters := []*Limiter{
		{Pool: process(t, url), Rules: rules, DefaultAccount: "acct", Guard: guard},
		{Pool: process(t, url), Rules: rules, DefaultAccount: "acct", Guard: guard},
	}
	// The ledger prunes what leaves the window; a copy of every grant, as
	// the database recorded it, is what the limit is judged on. Times taken
	// here after Wait returns would carry the scheduler's delays (a
	// goroutine resumed 60 ms late makes two windows look like one).
	_, err := limiters[0].Pool.Exec(context.Background(), `
		CREATE TABLE granted_copy (at timestamptz NOT NULL);
		CREATE FUNCTION copy_grant() RETURNS trigger LANGUAGE plpgsql AS
			'BEGIN INSERT INTO granted_copy VALUES (NEW.at); RETURN NEW; END';
		CREATE TRIGGER copy_grant AFTER INSERT ON rate_limit_events FOR EACH ROW EXECUTE FUNCTION copy_grant();`)
	require.NoError(t, err)
	var mu sync.Mutex
	var granted []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for _, l := range limiters {
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(l *Limiter) {
				defer wg.Done()
				for ctx.Err() == nil {
					if err := l.Wait(ctx, "list"); err != nil {
						return
					}
					mu.Lock()
					granted = append(granted, time.Now())
					mu.Unlock()
				}
			}(l)
		}
	}
	wg.Wait()
	var recorded []time.Time
	rows, err := limiters[0].Pool.Query(context.Background(), `SELECT at FROM granted_copy`)
	require.NoError(t, err)
	recorded, err = pgx.CollectRows(rows, pgx.RowTo[time.Time])
	require.NoError(t, err)
	require.Len(t, recorded, len(granted), "every grant is in the ledger")
	require.LessOrEqual(t, maxInWindow(recorded, time.Second), 10, "never more than the limit in a window")
	require.GreaterOrEqual(t, len(granted), 30, "about 10 a second for 3.5 seconds were granted")
	require.LessOrEqual(t, len(granted), 40)
}

func TestLongWaitIsRefusedWithRetryAfter(t *testing.T) {
	pool := process(t, dbtest.NewURL(t))
	l := &Limiter{Pool: pool, Rules: Rules(2, time.Minute, 0), DefaultAccount: "acct", MaxWait: time.Second}
	ctx := context.Background()
	require.NoError(t, l.Wait(ctx, "list"))
	require.NoError(t, l.Wait(ctx, "list"))

	err := l.Wait(ctx, "list")

	var e *thingspace.Error
	require.True(t, errors.As(err, &e))
	require.Equal(t, thingspace.KindRateLimited, e.Kind)
	require.True(t, e.Retryable())
	require.Greater(t, e.RetryAfter, 50*time.Second, "the slot frees when the first request leaves the minute")
	require.LessOrEqual(t, e.RetryAfter, time.Minute+time.Second)
}

func TestActivationsHaveTheirOwnBudget(t *testing.T) {
	pool := process(t, dbtest.NewURL(t))
	l := &Limiter{Pool: pool, Rules: Rules(100, time.Hour, 2), DefaultAccount: "acct", MaxWait: 100 * time.Millisecond}
	ctx := context.Background()
	require.NoError(t, l.Wait(ctx, "activate"))
	require.NoError(t, l.Wait(ctx, "activate"))
	require.Error(t, l.Wait(ctx, "activate"), "third activation in the minute")
	require.NoError(t, l.Wait(ctx, "suspend"), "other requests are not held back")
	st, err := l.Status(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"activate", "requests"}, []string{st[0].Bucket, st[1].Bucket})
	require.Equal(t, 2, st[0].Used)
	require.Equal(t, 3, st[1].Used)
}

func TestAccountsAreCountedApart(t *testing.T) {
	pool := process(t, dbtest.NewURL(t))
	l := &Limiter{Pool: pool, Rules: Rules(1, time.Hour, 0), DefaultAccount: "a", MaxWait: 10 * time.Millisecond}
	ctx := context.Background()
	require.NoError(t, l.Wait(ctx, "list"))
	require.NoError(t, l.Wait(WithAccount(ctx, "b"), "list"))
	require.Error(t, l.Wait(WithAccount(ctx, "a"), "list"))
}

// After a 429 the account waits for Retry-After, then spaces its requests
// below the limit instead of sending them in a burst.
func TestThrottledThenPaced(t *testing.T) {
	pool := process(t, dbtest.NewURL(t))
	l := &Limiter{
		Pool:           pool,
		Rules:          Rules(20, 2*time.Second, 0),
		DefaultAccount: "acct",
		MaxWait:        10 * time.Millisecond,
	}
	ctx := context.Background()

	l.Throttled(ctx, "suspend", 300*time.Millisecond)
	err := l.Wait(ctx, "list")
	var e *thingspace.Error
	require.True(t, errors.As(err, &e), "nothing goes out during Retry-After")
	require.Greater(t, e.RetryAfter, 200*time.Millisecond)
	st, err := l.Status(ctx, "")
	require.NoError(t, err)
	require.NotNil(t, st[0].ThrottledUntil)

	time.Sleep(350 * time.Millisecond)
	l.MaxWait = 5 * time.Second
	var times []time.Time
	for i := 0; i < 5; i++ {
		require.NoError(t, l.Wait(ctx, "list"))
		times = append(times, time.Now())
	}
	// Paced at 90% of 20 per 2 s: one every ~111 ms, not five at once.
	for i := 1; i < len(times); i++ {
		require.Greater(t, times[i].Sub(times[i-1]), 80*time.Millisecond, "request %d", i)
	}
}
