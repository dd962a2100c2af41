package activities_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/iot-ops/tsbulk/activities"
	"github.com/iot-ops/tsbulk/change"
	"github.com/iot-ops/tsbulk/harness/thingspacesim"
	"github.com/iot-ops/tsbulk/thingspace"
	"github.com/iot-ops/tsbulk/workflows/api"
)

// The polling cost tests run on an account of 50,000 devices (26 pages of
// 2,000, read by earliest) with 30 device changes due, spread over its
// first third, so that reading every page and reading up to the last due
// device differ.
const (
	bigAccount = 50000
	listPage   = 2000
)

// duePositions are the places in the account's list of the devices due.
var duePositions = func() []int {
	out := make([]int, 30)
	for i := range out {
		out[i] = 250 + i*500
	}
	return out
}()

// pageOf is the 1-based page of the account's list holding position pos
// for the first time. The poller pages by earliest, which is inclusive:
// each page after the first starts with the last device of the one before
// (the simulator seeds devices 1 ms apart), so it brings listPage-1 new
// ones.
func pageOf(pos int) int { return max(pos-1, 0)/(listPage-1) + 1 }

// pagesOf is the number of pages of a list of n devices.
func pagesOf(n int) int { return pageOf(n - 1) }

// pollWorld is a harness whose simulated account holds size devices, with
// one sent activation per device at the positions and per unknown
// device (not at ThingSpace), ready to be registered for polling.
type pollWorld struct {
	*harness
	all []thingspacesim.DeviceSeed
	ids map[string]int64
}

func newPollWorld(t *testing.T, size int, positions []int, unknown ...thingspacesim.DeviceSeed) *pollWorld {
	t.Helper()
	return newPollWorldOf(t, devices(size, "8914800701", "active"), positions, unknown...)
}

// newPollWorldOf is newPollWorld with the account's devices given.
func newPollWorldOf(t *testing.T, all []thingspacesim.DeviceSeed, positions []int,
	unknown ...thingspacesim.DeviceSeed) *pollWorld {
	t.Helper()
	h := newHarness(t)
	h.seed(all...)
	cs := changes("activate", 1, unknown...)
	for _, pos := range positions {
		cs = append(cs, changeSpec{seed: all[pos], op: "activate", batch: 1})
	}
	bulk, ids := h.newBulk(account, cs...)
	// Accepted an hour ago; ThingSpace shows them active now: each check
	// confirms its device.
	h.exec(
		`UPDATE device_changes SET status = 'SUBMITTED', request_id = 'req-' || id, submitted_at = now() - interval '1 hour'
		WHERE bulk_change_id = $1`,
		bulk,
	)
	return &pollWorld{harness: h, all: all, ids: ids}
}

// due registers the devices at the positions for polling.
func (w *pollWorld) due(positions ...int) {
	w.t.Helper()
	for _, pos := range positions {
		d := w.all[pos]
		w.requestPoll(account, w.ids[d.ICCID], d.ICCID, "activate")
	}
}

// lists counts the simulator's list requests.
func (w *pollWorld) lists() int { return w.stats().Requests[epList] }

// savedCursor is the account's saved list position, nil when at the start.
func (w *pollWorld) savedCursor() *thingspace.ListCursor {
	w.t.Helper()
	var raw []byte
	require.NoError(
		w.t,
		w.store.Pool.QueryRow(ctx(w.t), `SELECT cursor FROM poll_cursors WHERE account_name = $1`, account).Scan(&raw),
	)
	if raw == nil {
		return nil
	}
	var c thingspace.ListCursor
	require.NoError(w.t, json.Unmarshal(raw, &c))
	require.Nil(w.t, c.LargestDeviceIDSeen, "the poller pages by earliest: %s", raw)
	require.NotEmpty(w.t, c.Earliest, "the poller pages by earliest: %s", raw)
	return &c
}

// auditMark is the newest audit log id, to read what follows it.
func (w *pollWorld) auditMark() int64 {
	w.t.Helper()
	var id int64
	require.NoError(w.t, w.store.Pool.QueryRow(ctx(w.t), `SELECT coalesce(max(id), 0) FROM m2m_log`).Scan(&id))
	return id
}

// listCursorsSince returns the earliest each list request sent after the
// mark carried ("": none, the start of the list; single-device lookups are
// left out). None may carry largestDeviceIdSeen: the published answer has
// no cursor to continue with.
func (w *pollWorld) listCursorsSince(mark int64) []string {
	w.t.Helper()
	rows, err := w.store.Pool.Query(ctx(w.t), `SELECT request_body FROM m2m_log
		WHERE id > $1 AND service = 'thingspace' AND operation = $2 ORDER BY id`, mark, thingspace.OpList)
	require.NoError(w.t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var body string
		require.NoError(w.t, rows.Scan(&body))
		var req thingspace.ListRequest
		require.NoError(w.t, json.Unmarshal([]byte(body), &req))
		if req.DeviceID == nil {
			require.Nil(w.t, req.LargestDeviceIDSeen, "list request %s", body)
			out = append(out, req.Earliest)
		}
	}
	require.NoError(w.t, rows.Err())
	return out
}

// A cycle lists the account only up to the page of the last device due,
// then starts from the top again next time.
func TestPollAccountStopsAtLastDueDevice(t *testing.T) {
	t.Parallel()
	w := newPollWorld(t, bigAccount, duePositions)
	w.acts.PollMaxRequests = 100
	w.due(duePositions...)

	before, mark := w.lists(), w.auditMark()
	res := w.pollAccount(account)
	require.Equal(t, activities.PollAccountResult{Checked: 30, Resolved: 30}, res)
	want := pageOf(duePositions[len(duePositions)-1])
	got := w.lists() - before
	t.Logf(
		"FIGURES poll: %d devices in the account, %d due: %d list requests (whole account: %d)",
		bigAccount,
		len(duePositions),
		got,
		pagesOf(bigAccount),
	)
	require.Equal(t, want, got, "pages up to the last due device, not the %d of the account", pagesOf(bigAccount))
	cursors := w.listCursorsSince(mark)
	require.Len(t, cursors, want)
	require.Empty(t, cursors[0], "paging by date added, from the start")
	require.Nil(t, w.savedCursor(), "every due device seen: the next cycle starts from the top")
	require.Len(t, w.temporal.signalled(), 30)
	require.Empty(t, w.pollRows())
}

// With a cap of N requests a cycle stops after N pages, the devices it did
// not reach stay due, untouched, and the next cycle carries on from the
// saved cursor: the capped cycles together cost what one uncapped cycle
// would.
func TestPollAccountCapResumesFromCursor(t *testing.T) {
	t.Parallel()
	w := newPollWorld(t, bigAccount, duePositions)
	const capN = 3
	w.acts.PollMaxRequests = capN
	w.acts.PollBatchThreshold = 1 // keep listing however few devices remain
	w.due(duePositions...)

	lastPage := pageOf(duePositions[len(duePositions)-1])
	var saved []string
	total, resolved := 0, 0
	for cycle := 1; resolved < len(duePositions); cycle++ {
		require.LessOrEqual(t, cycle, lastPage, "every due device found")
		firstPage, endPage := (cycle-1)*capN+1, min(cycle*capN, lastPage)
		wantResolved := 0
		for _, pos := range duePositions {
			if p := pageOf(pos); p >= firstPage && p <= endPage {
				wantResolved++
			}
		}
		before, mark := w.lists(), w.auditMark()
		res := w.pollAccount(account)
		n := w.lists() - before
		total += n
		require.Equal(t, endPage-firstPage+1, n, "cycle %d: pages %d to %d", cycle, firstPage, endPage)
		require.LessOrEqual(t, n, capN)
		require.Equal(t, wantResolved, res.Resolved, "cycle %d", cycle)
		resolved += res.Resolved
		require.Equal(t, len(duePositions)-resolved, res.Waiting, "cycle %d", cycle)
		sent := w.listCursorsSince(mark)
		require.Len(t, sent, n)
		if cycle == 1 {
			require.Empty(t, sent[0])
		} else {
			require.Equal(t, saved[len(saved)-1], sent[0], "cycle %d resumes from the saved cursor", cycle)
		}
		if resolved < len(duePositions) {
			c := w.savedCursor()
			require.NotNil(t, c, "cycle %d saved where it stopped", cycle)
			saved = append(saved, c.Earliest)
			for id, p := range w.pollRows() {
				require.Zero(t, p.Attempts, "device change %d not reached: untouched", id)
				require.LessOrEqual(t, p.Due, time.Duration(0), "device change %d still due", id)
			}
		}
	}
	require.Equal(t, lastPage, total, "capped cycles read each page once")
	require.Nil(t, w.savedCursor(), "every due device seen")
	require.Empty(t, w.pollRows())
}

// On a smaller account (3 pages): a cycle that started mid-list and
// reaches the end goes on from the top for a device due before its start;
// a device ThingSpace does not have is reported not found without a
// lookup when one cycle read the whole list, and after a lookup of its own
// when the pass over the list spanned capped cycles (it may have come due
// after its page was read).
func TestPollAccountWrapsAroundAndFindsMissingDevices(t *testing.T) {
	t.Parallel()
	const size = 1 + 3*(listPage-1) // 3 pages
	gone := devices(1, "8914800702", "")[0]
	w := newPollWorld(t, size, []int{100, 5000, 5001}, gone)
	w.acts.PollBatchThreshold = 1 // list, even for two devices
	w.acts.PollMaxRequests = 100
	goneFound := func() api.Confirmation {
		t.Helper()
		var c *api.Confirmation
		for _, s := range w.temporal.signalled() {
			if s.WorkflowID == workflowOf(w.ids[gone.ICCID]) {
				cf := s.Arg.(api.Confirmation)
				c = &cf
			}
		}
		require.NotNil(t, c, "the missing device was given a verdict")
		return *c
	}

	// The whole list in one cycle: not found, no lookup.
	w.due(100)
	w.requestPoll(account, w.ids[gone.ICCID], gone.ICCID, "activate")
	before := w.lists()
	require.Equal(t, activities.PollAccountResult{Checked: 2, Resolved: 2}, w.pollAccount(account))
	require.Equal(t, 3, w.lists()-before, "every page, no lookup")
	require.Equal(t, change.Code(thingspace.CodeDeviceNotFound), goneFound().FaultCode)
	require.Nil(t, w.savedCursor())

	// Capped at page 1, short of the devices on page 3; then pages 2 and
	// 3, and page 1 again for a device that came due meanwhile.
	w.acts.PollMaxRequests = 1
	w.due(5000, 5001)
	require.Equal(t, activities.PollAccountResult{Waiting: 2}, w.pollAccount(account))
	require.NotNil(t, w.savedCursor())
	w.acts.PollMaxRequests = 100
	w.due(100)
	before, mark := w.lists(), w.auditMark()
	require.Equal(t, activities.PollAccountResult{Checked: 3, Resolved: 3}, w.pollAccount(account))
	require.Equal(t, 3, w.lists()-before, "pages 2 and 3, then page 1")
	sent := w.listCursorsSince(mark)
	require.Len(t, sent, 3)
	require.NotEmpty(t, sent[0], "from the saved cursor")
	require.Empty(t, sent[2], "then from the top")
	require.Nil(t, w.savedCursor())

	// The pass spans two capped cycles: at its end, a lookup.
	w.acts.PollMaxRequests = 2
	w.due(5000, 5001)
	w.requestPoll(account, w.ids[gone.ICCID], gone.ICCID, "activate")
	before = w.lists()
	require.Equal(t, activities.PollAccountResult{Waiting: 3}, w.pollAccount(account))
	require.Equal(t, activities.PollAccountResult{Checked: 3, Resolved: 3}, w.pollAccount(account))
	require.Equal(t, 3+1, w.lists()-before, "every page once, and one lookup")
	require.Equal(t, change.Code(thingspace.CodeDeviceNotFound), goneFound().FaultCode)
	require.Nil(t, w.savedCursor())
}

// Devices added at the same instant across page boundaries (groups of 30,
// so that both boundaries fall inside a group), with cycles capped at one
// page: the saved cursor keeps the instant and the devices seen at it, so
// the next cycle delivers the rest of the group and goes on. Every due
// device is confirmed once, on the page where it first appears, and none
// is taken for missing.
func TestPollAccountPagesAcrossTies(t *testing.T) {
	t.Parallel()
	const size, group = 5000, 30
	all := devices(size, "8914800702", "active")
	// Activated after the requests were accepted (an hour ago): confirmed.
	base := time.Now().Add(-30 * time.Minute).Truncate(time.Millisecond)
	for i := range all {
		all[i].AddedAt = base.Add(time.Duration(i/group) * time.Second)
	}
	// Page 1: devices 0-1999, the group 1980-2009 cut at 1999; page 2 from
	// that instant: 1980-3979, new from 2000, the group 3960-3989 cut;
	// page 3: 3960-4999.
	firstOn := [][]int{{10, 1985, 1999}, {2000, 2005, 3975}, {3985, 4999}}
	var due []int
	for _, ps := range firstOn {
		due = append(due, ps...)
	}
	w := newPollWorldOf(t, all, due)
	w.acts.PollMaxRequests = 1
	w.acts.PollBatchThreshold = 1 // keep listing, however few devices remain
	w.due(due...)

	for cycle, ps := range firstOn {
		mark := w.auditMark()
		res := w.pollAccount(account)
		require.Equal(t, len(ps), res.Resolved, "cycle %d: the devices first seen on page %d", cycle+1, cycle+1)
		sent := w.listCursorsSince(mark)
		require.Len(t, sent, 1)
		if cycle == 0 {
			require.Empty(t, sent[0])
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, sent[0])
		require.NoError(t, err)
		require.True(t, at.Equal(all[group*(cycle*66)].AddedAt), "cycle %d resumes at the instant of the cut group: %s",
			cycle+1, sent[0])
	}
	require.Empty(t, w.pollRows())
	sigs := w.temporal.signalled()
	require.Len(t, sigs, len(due), "each device confirmed once")
	for _, sg := range sigs {
		require.True(t, sg.Arg.(api.Confirmation).Success, "%+v", sg.Arg)
	}
	require.Nil(t, w.savedCursor())
}

// refusingLimiter lets ThingSpace requests go, except the failAt-th list
// request, refused as the shared rate limiter refuses a wait over 20 s.
type refusingLimiter struct {
	failAt int

	mu    sync.Mutex
	lists int
}

func (l *refusingLimiter) Wait(_ context.Context, op string) error {
	if op != thingspace.OpList {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists++
	if l.lists == l.failAt {
		return &thingspace.Error{Op: op, Kind: thingspace.KindRateLimited, RetryAfter: 10 * time.Millisecond,
			Message: "account is at its ThingSpace request limit; next slot in 25s (test)"}
	}
	return nil
}

func (l *refusingLimiter) Throttled(context.Context, string, time.Duration) {}

// pollOnce is one polling cycle as the account poller runs it: the
// activity, retried by Temporal.
func pollOnce(ctx workflow.Context, acct string) (activities.PollAccountResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 10 * time.Minute, // the race detector on a busy machine
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 10 * time.Millisecond, MaximumAttempts: 3},
	})
	var res activities.PollAccountResult
	err := workflow.ExecuteActivity(ctx, "PollAccount", activities.PollAccountInput{AccountName: acct}).Get(ctx, &res)
	return res, err
}

// A cycle that fails in the middle (the rate limiter would have it wait
// too long) is retried by Temporal, and the retry resumes from the page
// after the last one read: no page is read twice.
func TestPollAccountRetryResumesFromCursor(t *testing.T) {
	t.Parallel()
	w := newPollWorld(t, bigAccount, duePositions)
	w.acts.PollMaxRequests = 100
	w.acts.PollBatchThreshold = 1 // the retry keeps listing, however few devices remain
	w.due(duePositions...)
	lim := &refusingLimiter{failAt: 4}
	w.acts.ThingSpace = w.newThingSpaceClient(func(c *thingspace.Config) { c.Limiter = lim })

	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := suite.NewTestWorkflowEnvironment()
	env.SetTestTimeout(15 * time.Minute)
	env.RegisterActivity(w.acts)
	env.RegisterWorkflow(pollOnce)
	var attempts []int32
	var mu sync.Mutex
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, info.Attempt)
	})

	before, mark := w.lists(), w.auditMark()
	env.ExecuteWorkflow(pollOnce, account)
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res activities.PollAccountResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, []int32{1, 2}, attempts, "failed once, retried once")
	// The result counts the retry's work; the devices of the pages read
	// before the failure were confirmed by the failed attempt.
	require.Zero(t, res.Waiting)
	require.Equal(t, res.Checked, res.Resolved)
	require.Less(t, res.Resolved, 30)
	require.Len(t, w.temporal.signalled(), 30, "each device confirmed once")
	require.Empty(t, w.pollRows())

	want := pageOf(duePositions[len(duePositions)-1])
	require.Equal(t, want, w.lists()-before, "each page once: the retry did not start again from page 1")
	sent := w.listCursorsSince(mark)
	require.Len(t, sent, want)
	require.Empty(t, sent[0])
	var prev time.Time
	for i := 1; i < len(sent); i++ {
		at, err := time.Parse(time.RFC3339Nano, sent[i])
		require.NoError(t, err)
		require.True(t, at.After(prev), "request %d moves forward: %s after %s", i+1, sent[i], sent[i-1])
		prev = at
	}
	require.Nil(t, w.savedCursor())
}
