package db_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/db"
)

func TestPollNextWait(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		interval, maxInterval time.Duration
		attempts              int
		want                  time.Duration
	}{
		{time.Second, time.Minute, 0, time.Second},
		{time.Second, time.Minute, 1, 2 * time.Second},
		{time.Second, time.Minute, 5, 32 * time.Second},
		{time.Second, time.Minute, 6, time.Minute},
		{time.Second, time.Minute, 1000, time.Minute},
		{time.Minute, 30 * time.Second, 0, 30 * time.Second},
	} {
		p := db.PollRequest{NewPollRequest: db.NewPollRequest{Interval: tc.interval, MaxInterval: tc.maxInterval},
			Attempts: tc.attempts}
		require.Equal(t, tc.want, p.NextWait(), "%+v", tc)
	}
}

// PollAccounts reads every poll of the database: the test has one of its
// own.
func TestPollRequests(t *testing.T) {
	t.Parallel()
	st, ctx := newStore(t)

	b, ids := newBatch(t, st, change.Deactivate, 4)
	req, _ := claim(t, st, b.ID, 1)
	require.NoError(t, st.SetDeleteAfterDeactivation(ctx, ids[:1], true))
	require.NoError(t, st.MarkRequestAccepted(ctx, req, "req-poll", nil))
	register := func(id int64, acct string, interval time.Duration) {
		require.NoError(t, st.AddPollRequest(ctx, db.NewPollRequest{DeviceChangeID: id, AccountName: acct,
			ICCID: getChange(t, st, id).ICCID, Operation: "deactivate", RequestID: "req-poll", WorkflowID: "wf-" + acct,
			Interval: interval, MaxInterval: time.Minute}))
	}
	register(ids[0], "acct-a", time.Second)
	register(ids[1], "acct-a", time.Second)
	register(ids[2], "acct-a", time.Second)
	register(ids[3], "acct-b", time.Second)
	register(ids[0], "acct-a", time.Hour) // again: changes nothing
	exec(t, st, `UPDATE poll_requests SET next_poll_at = now() - interval '1 minute' WHERE device_change_id = $1`, ids[2])

	due, total, err := st.DuePolls(ctx, "acct-a", 10)
	require.NoError(t, err)
	require.Equal(t, 3, total)
	require.Equal(t, []int64{ids[2], ids[0], ids[1]}, pollIDs(due), "longest due first")
	first := due[1]
	require.Equal(t, time.Second, first.Interval, "registering again changed nothing")
	require.Equal(t, time.Minute, first.MaxInterval)
	require.Equal(t, "req-poll", first.RequestID)
	require.Equal(t, "wf-acct-a", first.WorkflowID)
	require.NotNil(t, first.SentAt)
	require.True(t, first.DeleteAfterDeactivation)
	require.False(t, due[2].DeleteAfterDeactivation)

	due, _, err = st.DuePolls(ctx, "acct-a", 1)
	require.NoError(t, err)
	require.Equal(t, []int64{ids[2]}, pollIDs(due))

	require.NoError(t, st.DeferPoll(ctx, ids[2], time.Hour, "pending deactivation"))
	due, total, err = st.DuePolls(ctx, "acct-a", 10)
	require.NoError(t, err)
	require.Equal(t, 3, total, "a deferred poll is still registered")
	require.Equal(t, []int64{ids[0], ids[1]}, pollIDs(due))
	require.Equal(t, 1, queryInt(t, st, `SELECT attempts FROM poll_requests WHERE device_change_id = $1`, ids[2]))

	accounts, err := st.PollAccounts(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"acct-a", "acct-b"}, accounts)

	require.NoError(t, st.RemovePollRequest(ctx, ids[3]))
	require.NoError(t, st.RemovePollRequest(ctx, ids[3]))
	accounts, err = st.PollAccounts(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"acct-a"}, accounts)
	due, total, err = st.DuePolls(ctx, "acct-b", 10)
	require.NoError(t, err)
	require.Zero(t, total)
	require.Empty(t, due)

	t.Run("PollCursor", func(t *testing.T) { testPollCursor(t, st) })
}

func pollIDs(ps []db.PollRequest) []int64 {
	return each(ps, func(p db.PollRequest) int64 { return p.DeviceChangeID })
}

// A polling cycle's cursor and request count survive its retries; a new
// cycle keeps the cursor and counts its requests from 0.
func testPollCursor(t *testing.T, st *db.Store) {
	ctx := testCtx(t)

	c, err := st.BeginPollCycle(ctx, "acct-c", "cycle-1")
	require.NoError(t, err)
	require.Equal(t, db.PollCursor{AccountName: "acct-c", CycleKey: "cycle-1"}, *c, "a new cursor starts the list")

	page := json.RawMessage(`{"page":2}`)
	require.NoError(t, st.SavePollProgress(ctx, "acct-c", db.PollProgress{Cursor: page, StartLap: true, Requests: 1}))
	retry, err := st.BeginPollCycle(ctx, "acct-c", "cycle-1")
	require.NoError(t, err)
	require.JSONEq(t, string(page), string(retry.Cursor))
	require.Equal(t, 1, retry.CycleRequests, "a retry of the cycle keeps its count")
	require.NotNil(t, retry.LapStartedAt)
	lap := *retry.LapStartedAt

	require.NoError(t, st.SavePollRequests(ctx, "acct-c", 3))
	require.NoError(t, st.SavePollProgress(ctx, "acct-c", db.PollProgress{Cursor: json.RawMessage(`{"page":3}`),
		Requests: 4}))
	next, err := st.BeginPollCycle(ctx, "acct-c", "cycle-2")
	require.NoError(t, err)
	require.Zero(t, next.CycleRequests, "a new cycle counts from 0")
	require.JSONEq(t, `{"page":3}`, string(next.Cursor), "and resumes where the last stopped")
	require.True(t, lap.Equal(*next.LapStartedAt), "a page that does not start a lap keeps the lap's start")

	require.NoError(t, st.SavePollProgress(ctx, "acct-c", db.PollProgress{Requests: 5}))
	end, err := st.BeginPollCycle(ctx, "acct-c", "cycle-2")
	require.NoError(t, err)
	require.Nil(t, end.Cursor, "the end of the list: back to the start")
	require.Equal(t, 5, end.CycleRequests)

	other, err := st.BeginPollCycle(ctx, "acct-d", "cycle-2")
	require.NoError(t, err)
	require.Nil(t, other.Cursor, "each account has its own cursor")
	require.Zero(t, other.CycleRequests)
}
