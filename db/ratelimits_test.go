package db_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/db"
	"github.com/iot-ops/tsbulk/db/dbtest"
)

func TestRateLedger(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	t.Run("grants are counted in their window and forgotten after", func(t *testing.T) {
		var now time.Time
		require.NoError(t, st.InRateLedger(ctx, "acct-grants", func(tx *db.RateLedgerTx) error {
			b, err := tx.LockBucket(ctx, "requests")
			if err != nil {
				return err
			}
			require.Equal(t, db.RateBucket{}, b, "a new bucket is empty")
			if now, err = tx.Now(ctx); err != nil {
				return err
			}
			for _, ago := range []time.Duration{3 * time.Hour, 50 * time.Minute, 30 * time.Minute, 10 * time.Minute} {
				if err := tx.Grant(ctx, "requests", "suspend", now.Add(-ago), time.Time{}); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(t, st.InRateLedger(ctx, "acct-grants", func(tx *db.RateLedgerTx) error {
			b, err := tx.LockBucket(ctx, "requests")
			require.NoError(t, err)
			require.NotNil(t, b.LastAt)
			require.True(t, now.Add(-10*time.Minute).Equal(*b.LastAt), "the last grant recorded")

			n, err := tx.CountSince(ctx, "requests", now.Add(-time.Hour))
			require.NoError(t, err)
			require.Equal(t, 3, n)
			n, err = tx.CountSince(ctx, "activate", now.Add(-time.Hour))
			require.NoError(t, err)
			require.Zero(t, n, "buckets are counted apart")
			oldest, err := tx.GrantedSince(ctx, "requests", now.Add(-time.Hour), 0)
			require.NoError(t, err)
			require.True(t, now.Add(-50*time.Minute).Equal(oldest))
			second, err := tx.GrantedSince(ctx, "requests", now.Add(-time.Hour), 1)
			require.NoError(t, err)
			require.True(t, now.Add(-30*time.Minute).Equal(second))

			return tx.Grant(ctx, "requests", "restore", now, now.Add(-time.Hour))
		}))
		require.Equal(t, 4, queryInt(t, st, `SELECT count(*) FROM rate_limit_events WHERE account_name = 'acct-grants'`),
			"the grant three hours old is forgotten")
	})

	t.Run("a transaction that fails grants nothing", func(t *testing.T) {
		boom := errors.New("boom")
		err := st.InRateLedger(ctx, "acct-rollback", func(tx *db.RateLedgerTx) error {
			if _, err := tx.LockBucket(ctx, "requests"); err != nil {
				return err
			}
			now, err := tx.Now(ctx)
			if err != nil {
				return err
			}
			if err := tx.Grant(ctx, "requests", "suspend", now, time.Time{}); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		require.Zero(t, queryInt(t, st, `SELECT count(*) FROM rate_limit_events WHERE account_name = 'acct-rollback'`))
	})

	// Workers granting requests of one account at once, each checking the
	// window under the bucket's lock: the limit holds however many run.
	t.Run("concurrent grants never exceed the limit", func(t *testing.T) {
		const limit = 5
		granted := dbtest.Race(12, func(int) bool {
			ok := false
			err := st.InRateLedger(ctx, "acct-race", func(tx *db.RateLedgerTx) error {
				if _, err := tx.LockBucket(ctx, "requests"); err != nil {
					return err
				}
				now, err := tx.Now(ctx)
				if err != nil {
					return err
				}
				used, err := tx.CountSince(ctx, "requests", now.Add(-time.Hour))
				if err != nil || used >= limit {
					return err
				}
				ok = true
				return tx.Grant(ctx, "requests", "suspend", now, now.Add(-time.Hour))
			})
			return err == nil && ok
		})
		n := 0
		for _, g := range granted {
			if g {
				n++
			}
		}
		require.Equal(t, limit, n)
		require.Equal(t, limit, queryInt(t, st, `SELECT count(*) FROM rate_limit_events WHERE account_name = 'acct-race'`))
	})

	t.Run("a throttle is never shortened; in use reads only what is still on", func(t *testing.T) {
		require.NoError(t, st.ThrottleBucket(ctx, "acct-429", "requests", time.Minute, time.Hour))
		u, err := st.RateBucketInUse(ctx, "acct-429", "requests", time.Hour)
		require.NoError(t, err)
		require.NotNil(t, u.ThrottledUntil)
		require.NotNil(t, u.PacedUntil)
		throttled, paced := *u.ThrottledUntil, *u.PacedUntil
		require.InDelta(t, time.Hour.Seconds(), paced.Sub(throttled).Seconds(), 1)

		require.NoError(t, st.ThrottleBucket(ctx, "acct-429", "requests", time.Second, time.Second))
		u, err = st.RateBucketInUse(ctx, "acct-429", "requests", time.Hour)
		require.NoError(t, err)
		require.True(t, throttled.Equal(*u.ThrottledUntil), "a shorter Retry-After does not shorten the throttle")
		require.True(t, paced.Equal(*u.PacedUntil))

		require.NoError(t, st.ThrottleBucket(ctx, "acct-429", "requests", 2*time.Minute, time.Hour))
		u, err = st.RateBucketInUse(ctx, "acct-429", "requests", time.Hour)
		require.NoError(t, err)
		require.True(t, u.ThrottledUntil.After(throttled), "a longer one extends it")

		exec(t, st, `UPDATE rate_limit_buckets SET throttled_until = clock_timestamp() - interval '1 second'
			WHERE account_name = 'acct-429'`)
		require.NoError(t, st.RecordEarlierRequests(ctx, "acct-429", 4))
		u, err = st.RateBucketInUse(ctx, "acct-429", "requests", time.Hour)
		require.NoError(t, err)
		require.Nil(t, u.ThrottledUntil, "a throttle that ended is not in use")
		require.NotNil(t, u.PacedUntil)
		require.Equal(t, 4, u.Used)
		u, err = st.RateBucketInUse(ctx, "acct-429", "requests", 30*time.Minute)
		require.NoError(t, err)
		require.Equal(t, 2, u.Used, "the last hour's requests, evenly spread: half in the last half hour")

		u, err = st.RateBucketInUse(ctx, "acct-none", "requests", time.Hour)
		require.NoError(t, err)
		require.Equal(t, db.RateBucketUse{}, u)
	})
}
